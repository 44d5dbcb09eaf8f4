/**
 * `baton upgrade --report FILE` under keep-alive load: the JSON report has
 * every step the command printed, samples of both masters' connections by
 * generation (the old generation's connections fall to 0 as the new one's
 * rise) and the summary the command printed; the SVG timeline next to it
 * draws each generation and marks each step.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import type { UpgradeReportData } from '../src/observe/upgrade-report.js';
import { EventLog, killAll, waitGone } from './helpers/server-process.js';
import { cli, masterUnderLoad, writeApp } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

test('baton upgrade --report writes the JSON report and an SVG timeline of the upgrade', async (t) => {
  const { dir, cfg, master: old, load } = await masterUnderLoad(t, log, 'workers: 2\nupgrade: { healthWindowMs: 300 }', 32, 100);
  writeApp(dir, 'v2');
  const file = path.join(dir, 'upgrade.json');
  const { stdout } = await run(process.execPath, [cli, 'upgrade', '-c', cfg, '--report', file]);
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
  // The SVG: a document with a line per generation and every step marked.
  const svg = fs.readFileSync(path.join(dir, 'upgrade.svg'), 'utf8');
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  for (const s of r.steps) assert.ok(svg.includes(s.step.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')), s.step);
  for (const k of new Set(r.samples.flatMap((s) => Object.keys(s.connections)))) assert.ok(svg.includes(k), k);

  await load.waitForMore(50);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  process.kill(newPid, 'SIGQUIT');
  await waitGone(newPid, 15_000);
});
