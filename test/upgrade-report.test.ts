/**
 * `baton upgrade --report FILE` under keep-alive load: the JSON report has
 * every step the command printed, samples of both masters' connections by
 * generation (the old generation's connections fall to 0 as the new one's
 * rise), requests per second by generation — which add up to the masters'
 * request counters and match what the load generator counted over the same
 * time — failed requests as baton counts them, and the summary the command
 * printed; the SVG timeline next to it draws each generation's connections
 * and requests per second and marks each step.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import type { UpgradeReportData } from '../src/observe/upgrade-report.js';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, fixture, killAll, spawnFixture, tempDir, upgradeFixture, waitGone } from './helpers/server-process.js';
import { cli, masterUnderLoad, writeApp } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

test('baton upgrade --report writes the JSON report and an SVG timeline of the upgrade', async (t) => {
  const { dir, cfg, master: old, load } = await masterUnderLoad(t, log, 'workers: 2\nupgrade: { healthWindowMs: 300 }', 32, 100);
  writeApp(dir, 'v2');
  const file = path.join(dir, 'upgrade.json');
  // What the load generator counted, over wall-clock time, to compare with the report's requests.
  const counted: [number, number][] = [[Date.now(), load.result.ok + load.result.failed]];
  const counting = setInterval(() => counted.push([Date.now(), load.result.ok + load.result.failed]), 10);
  const { stdout } = await run(process.execPath, [cli, 'upgrade', '-c', cfg, '--report', file]).finally(() => clearInterval(counting));
  assert.match(stdout, new RegExp(`report: ${file}, ${path.join(dir, 'upgrade.svg')}`));
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as UpgradeReportData;
  assert.equal(r.result, 'done');
  assert.equal(r.oldPid, old.pid);
  const newPid = Number(/→ (\d+);/.exec(stdout)![1]);
  assert.equal(r.newPid, newPid);
  // Every line the command printed is a step, in order, with non-decreasing times.
  const printed = stdout
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('report:'))
    .map((l) => l.replace(/^\s*✓\s*/, ''));
  assert.deepEqual(
    r.steps.map((s) => s.step),
    printed,
  );
  r.steps.forEach((s, i) => assert.ok(i === 0 || s.t >= r.steps[i - 1]!.t));
  assert.equal(r.summary?.migrated, Number(/(\d+) migrated/.exec(stdout)![1]));
  // Both masters were sampled: the old generation had connections and ended with none.
  const oldKeys = (s: (typeof r.samples)[number]) => Object.keys(s.connections).filter((k) => k.startsWith(`master ${old.pid} `));
  assert.ok(
    r.samples.some((s) => oldKeys(s).some((k) => s.connections[k]! > 0)),
    'the old master had connections',
  );
  assert.ok(
    r.samples.some((s) => Object.keys(s.connections).some((k) => k.startsWith(`master ${newPid} `))),
    'the new master was sampled',
  );
  const lastOld = r.samples.filter((s) => oldKeys(s).length > 0).at(-1)!;
  assert.deepEqual(
    oldKeys(lastOld).filter((k) => lastOld.connections[k] !== 0),
    [],
    `the old master's last sample (at ${lastOld.t} ms) still had connections`,
  );
  assert.equal(r.samples.at(-1)!.cut, 0);

  // Requests: each master's counter moved by exactly what its generations' intervals add up to.
  const intervals = (prefix: string) =>
    r.samples.reduce((a, s) => a + Object.entries(s.requests).reduce((b, [k, n]) => b + (k.startsWith(prefix) ? n : 0), 0), 0);
  const total = (c: Record<string, number>) => Object.values(c).reduce((a, n) => a + n, 0);
  assert.deepEqual(Object.keys(r.requestCounters).sort(), [String(old.pid), String(newPid)].sort());
  for (const [pid, c] of Object.entries(r.requestCounters)) {
    assert.equal(intervals(`master ${pid} `), total(c.last) - total(c.first), `master ${pid}: the intervals add up to its counter`);
  }
  assert.equal(r.totals.requests, intervals('master '));
  // Both generations served at a non-zero rate, the old one before the new one took over.
  const rpsOf = (pid: number) =>
    Math.max(
      ...r.samples.flatMap((s) =>
        Object.entries(s.rps)
          .filter(([k]) => k.startsWith(`master ${pid} `))
          .map(([, v]) => v),
      ),
    );
  assert.ok(rpsOf(old.pid) > 0, 'the old generation served requests');
  assert.ok(rpsOf(newPid) > 0, 'the new generation served requests');
  // The load generator's count from the first sample to the last: baton counts a request when it
  // arrives, the load when its answer did, so up to one request per connection (32) differs at each
  // end, plus what 10 ms of sampling granularity (each side) and the status round trip hold.
  const at = (ms: number) => {
    const i = counted.findIndex(([when]) => when >= ms);
    return i < 0 ? counted.at(-1)![1] : counted[i]![1];
  };
  const t0 = Date.parse(r.startedAt);
  const generated = at(t0 + r.samples.at(-1)!.t) - at(t0 + r.samples[0]!.t);
  const rate = generated / ((r.samples.at(-1)!.t - r.samples[0]!.t) / 1000);
  const tolerance = 2 * 32 + rate * 0.05 + generated * 0.02;
  t.diagnostic(`requests during the upgrade: baton ${r.totals.requests}, load generator ${generated}, tolerance ${Math.round(tolerance)}`);
  assert.ok(generated > 0, 'the load ran during the upgrade');
  assert.ok(
    Math.abs(r.totals.requests - generated) <= tolerance,
    `baton counted ${r.totals.requests} requests during the upgrade, the load generator ${generated} (tolerance ${Math.round(tolerance)})`,
  );
  // Failures as baton counts them (connections cut): none in this upgrade, in every interval and in the summary.
  assert.equal(r.totals.failed, 0);
  assert.equal(r.totals.failed, r.summary?.forced);
  assert.ok(r.samples.every((s) => s.failed === 0));
  // The SVG: a document with a line per generation and every step marked.
  const svg = fs.readFileSync(path.join(dir, 'upgrade.svg'), 'utf8');
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  for (const s of r.steps) assert.ok(svg.includes(s.step.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')), s.step);
  for (const k of new Set(r.samples.flatMap((s) => Object.keys(s.connections)))) assert.ok(svg.includes(k), k);
  for (const k of new Set(r.samples.flatMap((s) => Object.keys(s.rps)))) assert.ok(svg.includes(`${k} req/s`), `${k} req/s`);
  assert.ok(svg.includes('failed requests'));

  await load.waitForMore(50);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  process.kill(newPid, 'SIGQUIT');
  await waitGone(newPid, 15_000);
});

// The library's report (recordUpgrades): the fixture records the upgrade that replaces it.
for (const via of ['takeover', 'exec'] as const) {
  test(`recordUpgrades: a ${via} upgrade of a start() generation under load writes the same report`, async () => {
    const dir = tempDir();
    const env = { BATON_SOCKET_DIR: dir, UPGRADE_REPORT: path.join(dir, 'report-%p.json') };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const load = new HttpLoad(`http://127.0.0.1:${listening.http}`, 16);
    await load.waitForMore(200);
    const since = log.events.length;
    const next = await upgradeFixture(log, env, via, first.pid!, 2, since);
    const written = await log.waitEvent('upgrade-report', first.pid);
    const drained = (await log.waitEvent('drained', first.pid)).args as { migrated: number; forced: number }[];
    await log.waitEvent('exit', first.pid);
    await load.waitForGeneration((g) => g === 2);
    await load.waitForMore(50);
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);

    assert.equal(written.json, path.join(dir, `report-${first.pid}.json`));
    const r = JSON.parse(fs.readFileSync(written.json as string, 'utf8')) as UpgradeReportData;
    assert.equal(r.result, 'done');
    assert.equal(r.oldPid, first.pid);
    assert.equal(r.newPid, next.pid);
    const steps = r.steps.map((s) => s.step);
    for (const step of ['predecessor.ready-received', 'phase handing-over', 'phase draining', 'predecessor.done-sent'])
      assert.ok(steps.includes(step), `${step} in ${steps.join(', ')}`);
    r.steps.forEach((s, i) => assert.ok(i === 0 || s.t >= r.steps[i - 1]!.t));
    // Requests: the intervals add up to the generation's counter, and that counter is every
    // response the load generator got from generation 1 (no other client spoke to it).
    const key = `pid ${first.pid} / generation 1`;
    const counter = r.requestCounters[String(first.pid)]!;
    assert.equal(
      r.samples.reduce((a, s) => a + s.requests[key]!, 0),
      counter.last['1']! - counter.first['1']!,
    );
    assert.equal(r.totals.requests, counter.last['1']! - counter.first['1']!);
    assert.equal(counter.last['1'], result.generations.get(1), 'the generation counted every request the load sent it');
    assert.ok(r.samples.length >= 2);
    // Connections: migrated as the drain report says, none cut, no failed request.
    assert.equal(r.samples.at(-1)!.migrated, drained[0]!.migrated);
    assert.ok(drained[0]!.migrated > 0, 'keep-alive connections migrated');
    assert.equal(r.samples.at(-1)!.connections[key], 0);
    assert.equal(r.totals.failed, drained[0]!.forced);
    assert.equal(r.totals.failed, 0);
    const svg = fs.readFileSync(written.svg as string, 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.ok(svg.includes(`${key} req/s`));
    for (const s of r.steps) assert.ok(svg.includes(s.step), s.step);
    process.kill(next.pid!, 'SIGTERM');
    await log.waitEvent('exit', next.pid);
  });
}
