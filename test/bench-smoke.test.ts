/**
 * Smoke run of the peer benchmark (bench/peers.ts), so its harness cannot rot:
 * the two scenarios whose clients are the bench's own Node clients (3:
 * WebSockets, 4: idle keep-alive) against baton's exec path only, 2 upgrades
 * each, small connection counts — no nginx, haproxy, pm2, wrk or h2load
 * needed. It checks baton's promise as the bench measures it (every WebSocket
 * survives, no message lost, no idle use fails or reconnects), that a system
 * unavailable here is reported as skipped rather than failing the run, and that
 * the report and its SVG plots render from such results.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { tempDir } from './helpers/server-process.js';
import { renderReport, type PeersResults } from '../bench/report.js';
import { settingsFromEnv, type Settings } from '../bench/lib/scenario.js';
import { idle } from '../bench/scenarios/idle.js';
import { websocket } from '../bench/scenarios/websocket.js';
import { parseTimeline } from '../bench/lib/wrk.js';
import { batonSupervisorSystem, batonSystem } from '../bench/systems/baton.js';
import type { SystemDefinition } from '../bench/lib/system.js';
import { formatObserveCost, measureObserveCost } from '../bench/observe.js';
import { measureSteadyState } from '../bench/steady-state.js';
import { formatCpuCost } from '../bench/lib/cpu-cost.js';

const settings: Settings = {
  ...settingsFromEnv(),
  upgrades: 2,
  intervalMs: 0,
  warmupMs: 200,
  tailMs: 200,
  settleTimeoutMs: 10_000,
  wsConnections: 20,
  wsMessageIntervalMs: 20,
  idleConnections: 20,
  idleSpreadMs: 200,
};

describe('peer benchmark smoke run (baton exec only)', () => {
  const exec = batonSystem('exec');

  it('scenarios 3 and 4 run against baton, with nothing lost, and the report renders', async () => {
    const ws = await websocket(exec, settings);
    assert.equal(ws.status, 'ran', JSON.stringify(ws));
    if (ws.status !== 'ran') return;
    assert.equal(ws.upgrades.length, 2);
    assert.equal(ws.survival, 1, JSON.stringify(ws.upgrades));
    assert.ok(ws.totals.sent > 0);
    assert.equal(ws.totals.lost, 0);
    assert.equal(ws.totals.echoed, ws.totals.sent);
    assert.equal(ws.totals.connects, settings.wsConnections);

    const id = await idle(exec, settings);
    assert.equal(id.status, 'ran', JSON.stringify(id));
    if (id.status !== 'ran') return;
    assert.equal(id.uses, 2 * settings.idleConnections);
    assert.equal(id.failed, 0);
    assert.equal(id.freshConnects, 0);
    for (const u of id.upgrades) assert.ok(u.readyMs > 0 && u.goneMs !== null, JSON.stringify(u));

    // A system this machine cannot run is reported as skipped, not failed.
    const missing: SystemDefinition = { ...exec, id: 'missing-peer', label: 'missing peer', unavailable: () => 'not installed here' };
    const skipped = await idle(missing, settings);
    assert.equal(skipped.status, 'skipped');

    // The supervisor, running the plain app unmodified, reloaded (HUP): idle connections migrate too.
    const supervised = await idle(batonSupervisorSystem('reload'), settings);
    assert.equal(supervised.status, 'ran', JSON.stringify(supervised));
    if (supervised.status !== 'ran') return;
    assert.equal(supervised.failed, 0);
    assert.equal(supervised.freshConnects, 0);

    const results: PeersResults = {
      date: new Date().toISOString(),
      durationS: 1,
      environment: { node: process.version, tools: { wrk: null }, loadAverage: { start: [0], end: [0] } },
      settings: { ...settings },
      systems: [
        { id: exec.id, label: exec.label, description: exec.description, version: exec.version(), unavailable: null },
        { id: 'missing-peer', label: 'missing peer', description: '', version: null, unavailable: 'not installed here' },
      ],
      scenarios: { websocket: [ws], idle: [id, skipped] },
    };
    const dir = tempDir('baton-bench-report-');
    try {
      const md = renderReport(results, dir, '.');
      assert.match(md, /## 3\. Long connections/);
      assert.match(md, /✅ baton exec, scenario 3: 100\.0 % of WebSockets survived/);
      assert.match(md, /✅ baton exec, scenario 4: 0 failed uses of 40/);
      assert.match(md, /missing peer: \*\*skipped\*\* — not installed here/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses wrk’s summary and the timeline line of its Lua script, empty buckets included', () => {
    const output = [
      'Running 2s test @ http://127.0.0.1:1/',
      '  2 threads and 4 connections',
      '  Latency Distribution',
      '     50%  100.00us',
      '     99%    2.00ms',
      '  300 requests in 2.00s, 30.00KB read',
      '  Socket errors: connect 0, read 3, write 0, timeout 0',
      'Requests/sec:    150.00',
      'BENCH_JSON {"requests":300,"bytes":30720,"durationUs":2000000,"errors":{"connect":0,"read":3,"write":0,"status":0,"timeout":0},' +
        '"latencyUs":{"mean":120.5,"max":3000,"p50":100,"p90":500,"p99":2000,"p999":2900},' +
        '"ok":{"10":150,"13":150},"bad":{},"lost":{"11":2}}',
    ].join('\n');
    const t = parseTimeline(output, 100);
    assert.equal(t.requests, 300);
    assert.equal(t.errors.read, 3);
    assert.equal(t.percentilesMs.p999, 2.9);
    assert.deepEqual(
      t.buckets.map((b) => [b.at, b.ok, b.lost]),
      [
        [1000, 150, 0],
        [1100, 0, 2],
        [1200, 0, 0],
        [1300, 150, 0],
      ],
    );
    assert.equal(t.lostSeen, 2);
  });

  it('the observability cost benchmark (bench/observe.ts) runs its ABBA rounds and prints the ratio with its baseline', async () => {
    const r = await measureObserveCost({ rounds: 2, requests: 3000, connections: 8, warmupRequests: 2000 });
    assert.deepEqual(
      r.runs.map((x) => `${x.round}${x.variant}`),
      ['1on', '1off', '2off', '2on'],
    );
    for (const run of r.runs) {
      assert.equal(run.requests, 3000);
      assert.equal(run.failed, 0);
      assert.ok(run.serverCpuUsPerRequest > 0);
    }
    assert.equal(r.roundRatios.length, 2);
    // Nothing observability does runs per request: a cost that doubled the CPU would be a bug, whatever the machine's load.
    assert.ok(r.ratio > 0 && r.ratio < 2, formatObserveCost(r));
    assert.match(formatObserveCost(r), /µs CPU per request against [\d.]+ µs with BATON_OBSERVE=off \(baseline\); ratio [\d.]+/);
  });

  it('the steady-state cost benchmark (bench/steady-state.ts) runs plain, library and baton run in ABBA rounds for h1, h2c and WebSocket', async () => {
    const results = await measureSteadyState({
      rounds: 2,
      requests: 1000,
      messages: 1000,
      connections: 4,
      protocols: ['h1', 'h2c', 'ws'],
      variants: ['plain', 'library', 'run'],
      warmupUnits: 500,
    });
    assert.deepEqual(
      results.map((r) => r.protocol),
      ['h1', 'h2c', 'ws'],
    );
    for (const r of results) {
      assert.deepEqual(
        r.runs.map((x) => `${x.round}${x.variant}`),
        ['1plain', '1library', '1run', '2run', '2library', '2plain'],
      );
      // Every unit of work done by every variant: each request answered, each message echoed.
      for (const run of r.runs) {
        assert.equal(run.units, 1000, JSON.stringify(run));
        assert.equal(run.failed, 0);
        assert.ok(run.cpuUsPerUnit > 0);
      }
      assert.equal(r.variants.plain!.ratio, 1);
      assert.match(formatCpuCost(r), /library +[\d.]+ µs +ratio [\d.]+ × plain [\d.]+ µs \(rounds [\d.]+–[\d.]+/);
      assert.match(formatCpuCost(r), /load average [\d.]+ → [\d.]+/);
    }
  });
});
