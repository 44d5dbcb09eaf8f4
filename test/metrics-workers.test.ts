/**
 * The master's worker metrics from its `/metrics` endpoint, against what
 * `baton status` says: the connections of the load (`baton_connections`); a worker killed by SIGKILL is restarted
 * (`baton_worker_restarts_total`); an app that exits at start-up puts its
 * slot in a crash loop (`baton_worker_crash_loops`), while the other worker
 * serves on; and `baton_requests_failed_total` is what baton counts as
 * failed — the connections its drains cut: none here (the load's requests
 * on the killed workers' connections fail, but no drain cut them).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, after } from 'node:test';
import { request } from 'undici';
import { freePort } from './helpers/socket-activate.js';
import { EventLog, killAll } from './helpers/server-process.js';
import { masterUnderLoad, next, statusOf } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/**
 * One scrape of `port`'s /metrics: each series by its name and labels without
 * the master's default label `app`, e.g. `baton_worker_crash_loops` or `baton_workers{state="ready"}`.
 */
async function scrape(port: number): Promise<Map<string, number>> {
  const res = await request(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.statusCode, 200);
  const series = new Map<string, number>();
  for (const line of (await res.body.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    const key = line
      .slice(0, at)
      .replace(/,?app="app"/, '')
      .replace(/\{,?/, '{')
      .replace('{}', '');
    series.set(key, Number(line.slice(at + 1)));
  }
  return series;
}

test('worker restarts, crash loops and failed requests: /metrics equals baton status', async (t) => {
  const metricsPort = await freePort();
  const { dir, master, load } = await masterUnderLoad(
    t,
    log,
    `workers: 2\nrestart: { initialDelayMs: 50, crashLoopCount: 3 }\nmetrics: { host: 127.0.0.1, port: ${metricsPort} }`,
    16,
  );
  let m = await scrape(metricsPort);
  assert.equal(m.get('baton_worker_restarts_total'), 0);
  assert.equal(m.get('baton_worker_crash_loops'), 0);
  // The load's 16 keep-alive connections, by generation and phase, as status counts them.
  const connections = [...m].filter(([k]) => k.startsWith('baton_connections{')).reduce((a, [, v]) => a + v, 0);
  const initial = await statusOf(dir, master.pid);
  assert.equal(connections, 16);
  assert.equal(
    initial.workers.reduce((a, w) => a + (w.connections ?? 0), 0),
    connections,
  );

  // A worker killed outright is restarted once.
  let status = await statusOf(dir, master.pid);
  const victim = status.workers.find((w) => w.slot === 0)!;
  let since = log.events.length;
  process.kill(victim.pid, 'SIGKILL');
  await next(log, 'slot 0 ready again', (e) => e.event === 'worker-ready' && e.slot === 0 && e.workerPid !== victim.pid, since);
  m = await scrape(metricsPort);
  status = await statusOf(dir, master.pid);
  assert.equal(status.counters.restarts, 1);
  assert.equal(m.get('baton_worker_restarts_total'), status.counters.restarts);
  assert.equal(m.get('baton_worker_crash_loops'), 0);

  // The app on disk now exits at start: slot 0's restarts crash until it is a crash loop.
  fs.writeFileSync(path.join(dir, 'app.mjs'), 'process.exit(1);\n');
  since = log.events.length;
  process.kill(status.workers.find((w) => w.slot === 0)!.pid, 'SIGKILL');
  await next(log, 'the crash loop', (e) => e.event === 'crash-loop' && e.slot === 0, since);
  m = await scrape(metricsPort);
  status = await statusOf(dir, master.pid);
  assert.deepEqual(status.crashLoop, [0]);
  assert.equal(m.get('baton_worker_crash_loops'), 1);
  assert.ok(status.counters.restarts >= 2, `restarts ${status.counters.restarts}`);
  // A restart may be under way between the two reads: the counter never runs ahead of status by more than it.
  assert.ok(
    m.get('baton_worker_restarts_total')! <= status.counters.restarts &&
      m.get('baton_worker_restarts_total')! >= status.counters.restarts - 1,
    `metrics ${m.get('baton_worker_restarts_total')} vs status ${status.counters.restarts}`,
  );

  // Slot 1 served all along; no drain cut a connection.
  await load.waitForMore(100);
  await load.stop();
  m = await scrape(metricsPort);
  assert.equal(m.get('baton_requests_failed_total'), status.counters.forced);
  assert.equal(m.get('baton_requests_failed_total'), 0);
});
