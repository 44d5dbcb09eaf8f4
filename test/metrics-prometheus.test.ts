/**
 * The master's metrics, as a real Prometheus sees them: Prometheus scrapes a
 * `baton start` master (config `metrics`) every 200 ms while `baton reload`
 * and `baton upgrade` run under keep-alive load; then its HTTP API is asked
 * for the upgrade counters, the success gauges and the migrated connections,
 * which must equal what `baton status --json` and the upgrade's summary say.
 * The metrics socket passes from the old master to the new one: the scrapes
 * never fail (`up` is 1 in every sample).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import type { MasterStatus } from '../src/supervisor/master.js';
import { Prometheus, prometheusSkip } from './helpers/prometheus.js';
import { freePort } from './helpers/socket-activate.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { cli, masterUnderLoad, writeApp } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

async function statusJson(cfg: string): Promise<MasterStatus> {
  const { stdout } = await run(process.execPath, [cli, 'status', '--json', '-c', cfg]);
  const s = JSON.parse(stdout) as { masters: MasterStatus[] } | MasterStatus;
  return 'masters' in s ? s.masters[0]! : s;
}

/** Waits until master status shows only the wanted workers, all ready (the replaced ones finished draining). */
async function settled(cfg: string): Promise<MasterStatus> {
  for (;;) {
    const s = await statusJson(cfg);
    if (s.workers.length === s.workersWanted && s.workers.every((w) => w.state === 'ready')) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test(
  'Prometheus scrapes the master through reload and upgrade: counters, success gauges and migrations equal status and summary',
  { skip: prometheusSkip },
  async (t) => {
    const metricsPort = await freePort();
    const { dir, cfg, master, load } = await masterUnderLoad(
      t,
      log,
      `workers: 2\nupgrade: { healthWindowMs: 300 }\nmetrics: { host: 127.0.0.1, port: ${metricsPort} }`,
    );
    const prom = await Prometheus.start(tempDir('baton-prom-'), [`127.0.0.1:${metricsPort}`], 500);
    t.after(() => prom.stop());
    const begin = await prom.scrapedAfter(Date.now());
    assert.equal(await prom.value('baton_upgrades_total{kind="reload",result="done"}'), 0);
    assert.equal(await prom.value('baton_workers{state="ready"}'), 2);

    // Reload: the old workers' keep-alive connections migrate to the new ones.
    writeApp(dir, 'v2');
    await run(process.execPath, [cli, 'reload', '-c', cfg]);
    const afterReload = await settled(cfg);
    const t1 = await prom.scrapedAfter(Date.now());
    assert.equal(afterReload.counters.reloads, 1);
    assert.ok(afterReload.counters.migrated > 0, 'connections migrated on reload');
    assert.equal(await prom.value('baton_upgrades_total{kind="reload",result="done"}', t1), afterReload.counters.reloads);
    assert.equal(await prom.value('baton_upgrade_last_successful{kind="reload"}', t1), 1);
    assert.equal(
      await prom.value('baton_upgrade_last_success_timestamp_seconds{kind="reload"}', t1),
      Date.parse(afterReload.reload.last!.at) / 1000,
    );
    assert.equal(await prom.value('sum(baton_connections_migrated_total)', t1), afterReload.counters.migrated);
    assert.equal(await prom.value('sum(baton_connections_cut_total)', t1), afterReload.counters.forced);
    // By protocol: the load's keep-alive connections are HTTP/1.1, each counted as the status counts it.
    assert.ok(afterReload.byProtocol.http1!.migrated > 0);
    assert.equal(await prom.value('baton_connections_migrated_total{protocol="http1"}', t1), afterReload.byProtocol.http1!.migrated);
    assert.equal(await prom.value('baton_connections_drained_total{protocol="http1"}', t1), afterReload.byProtocol.http1!.drained);
    // The batches the old workers forwarded add up to the migrations their drain reports counted.
    assert.equal(await prom.value('sum(baton_migration_connections_total{result="adopted"})', t1), afterReload.counters.migrated);
    assert.equal(await prom.value('baton_generation', t1), Math.max(...afterReload.workers.map((w) => w.generation!)));
    assert.ok((await prom.value('sum(baton_phase_duration_seconds_count{role="worker",phase="draining"})', t1)) >= 2);

    // Binary upgrade: a new master; the metrics socket moves to it.
    writeApp(dir, 'v3');
    const { stdout } = await run(process.execPath, [cli, 'upgrade', '-c', cfg]);
    const summary = /master pid (\d+) → (\d+); old workers' connections: (\d+) migrated, (\d+) closed cleanly, (\d+) cut/.exec(stdout);
    assert.ok(summary, stdout);
    const newPid = Number(summary[2]);
    await waitGone(master.pid, 15_000);
    const afterUpgrade = await settled(cfg);
    assert.equal(afterUpgrade.pid, newPid);
    const t2 = await prom.scrapedAfter(Date.now());
    assert.equal(await prom.value('baton_upgrades_total{kind="binary",result="done"}', t2), afterUpgrade.counters.upgrades);
    assert.equal(afterUpgrade.counters.upgrades, 1);
    assert.equal(
      await prom.value('baton_upgrades_total{kind="reload",result="done"}', t2),
      afterUpgrade.counters.reloads,
      'counters outlive the master',
    );
    assert.equal(await prom.value('baton_upgrade_last_successful{kind="binary"}', t2), 1);
    assert.equal(await prom.value('sum(baton_connections_migrated_total)', t2), afterUpgrade.counters.migrated);
    // What the old master's workers handed over during the upgrade (WINCH) is in the new master's counters, by protocol too.
    assert.equal(
      (await prom.value('sum(baton_connections_migrated_total)', t2)) - (await prom.value('sum(baton_connections_migrated_total)', t1)),
      Number(summary[3]),
    );
    assert.equal(await prom.value('baton_connections_migrated_total{protocol="http1"}', t2), afterUpgrade.byProtocol.http1!.migrated);
    assert.equal(await prom.value('sum(baton_connections_cut_total)', t2), afterUpgrade.counters.forced);
    assert.equal(Number(summary[5]), 0);
    assert.equal(await prom.value('baton_phase{role="master",phase="running"}', t2), 1);
    assert.ok((await prom.value('process_resident_memory_bytes', t2)) > 0, "prom-client's process metrics");

    // Not one scrape failed from the first to the last, across both masters.
    const ups = await prom.query(`min_over_time(up[${Math.ceil(t2 - begin) + 1}s])`, t2);
    assert.equal(ups.length, 1);
    assert.equal(ups[0]!.value, 1, 'every scrape succeeded');

    await load.waitForMore(100);
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    process.kill(newPid, 'SIGQUIT');
    await waitGone(newPid, 15_000);
  },
);
