/**
 * HTTP/2 migration benchmark (`npm run bench:http2`). A migrated h2c session
 * runs in the successor on an Http2Bridge — Node's JS stream wrapper in front
 * of the socket — instead of Node's native stream: this measures what that
 * costs, and that nothing is lost on the way. For each upgrade path, rounds of:
 * 1. one h2load run (c × m streams, prior knowledge) across one upgrade:
 *    requests/s in a window before the upgrade (native sessions in the
 *    predecessor) and in one after it (the same connections, migrated, on the
 *    bridge), from h2load's per-request log; h2load's failed streams (0
 *    expected: the connections never end);
 * 2. a fresh h2load run against the new generation: its native sessions, the
 *    baseline measured in the same run for the bridged ones.
 * Prints medians and ratios (bridged / native) and writes
 * bench/results/http2-migration-<date>.json. Needs h2load (nghttp2-client).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BatonFixtures, type Via } from './lib/baton-fixture.js';
import { runH2load } from './lib/h2load.js';
import { EventLog, killAll, monoMs, pidsOf, tempDir } from './lib/processes.js';
import { machine, writeResults } from './lib/results.js';
import { median, rounded, table } from './lib/stats.js';

const CLIENTS = 8;
const STREAMS = 10;
/** One run across the upgrade: the upgrade starts UPGRADE_AT_S into it. */
const RUN_S = 10;
const UPGRADE_AT_S = 4;
/** Windows (seconds into the run) whose request rates are compared, clear of the upgrade itself. */
const BEFORE: [number, number] = [1, 3.5];
const AFTER_MARGIN_S = 1;
const FRESH_RUN_S = 4;
const ROUNDS = 3;

const out = (line = '') => process.stdout.write(`${line}\n`);
const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);

interface Round {
  via: Via;
  /** Requests/s on native sessions, before the upgrade. */
  before: number;
  /** Requests/s on the same connections after they migrated (bridged sessions). */
  migrated: number;
  /** Requests/s of a fresh h2load run against the new generation (native sessions). */
  fresh: number;
  failed: number;
  streams: number;
  /** Streams that completed after the new generation was ready: the load went on. */
  completedAfter: number;
  readyS: number;
}

/** Completed requests per second started in [from, to) seconds after `t0` (epoch ms). */
function rate(entries: { startMs: number; status: number }[], t0: number, from: number, to: number): number {
  const n = entries.filter((e) => e.status > 0 && e.startMs >= t0 + from * 1000 && e.startMs < t0 + to * 1000).length;
  return n / (to - from);
}

async function round(fixtures: BatonFixtures, via: Via, dir: string): Promise<Round> {
  const env = { BATON_SOCKET_DIR: tempDir('baton-bench-h2-'), H2C: '1' };
  const first = await fixtures.start(env);
  const h2cPort = first.ports[first.ports.length - 1]!;
  const url = `http://127.0.0.1:${h2cPort}/`;
  try {
    const logFile = path.join(dir, `h2load-${via}.log`);
    const t0 = Date.now();
    const load = runH2load(url, { clients: CLIENTS, streams: STREAMS, durationS: RUN_S, logFile });
    await new Promise((resolve) => setTimeout(resolve, UPGRADE_AT_S * 1000));
    const startedMono = monoMs();
    const u = await fixtures.upgrade(via, first.pid, 2, env);
    const readyS = UPGRADE_AT_S + (u.successor.readyAt - startedMono) / 1000;
    const r = await load;
    if (r.total === 0) throw new Error(`h2load made no request:\n${r.output}`);
    const afterFrom = readyS + AFTER_MARGIN_S;
    const fresh = await runH2load(url, { clients: CLIENTS, streams: STREAMS, durationS: FRESH_RUN_S, logFile });
    await fixtures.stop(u.successor.pid);
    return {
      via,
      before: rate(r.entries, t0, BEFORE[0], BEFORE[1]),
      migrated: rate(r.entries, t0, afterFrom, RUN_S - 0.5),
      fresh: fresh.succeeded / FRESH_RUN_S,
      failed: r.failed + r.status['4xx'] + r.status['5xx'],
      streams: r.total,
      completedAfter: r.entries.filter((e) => e.status > 0 && e.startMs > t0 + readyS * 1000).length,
      readyS,
    };
  } catch (err) {
    killAll(pidsOf(fixtures.log));
    throw err;
  }
}

async function main(): Promise<void> {
  if (spawnSync('h2load', ['--version']).status !== 0) {
    out('h2load not found: apt-get install nghttp2-client (or npm run bench:setup)');
    return;
  }
  const startedAt = new Date();
  const log = new EventLog();
  const fixtures = new BatonFixtures(log, 30_000);
  const dir = fs.mkdtempSync(path.join(tempDir('baton-bench-h2load-'), 'runs-'));
  const rounds: Round[] = [];
  try {
    for (let i = 0; i < ROUNDS; i++) {
      for (const via of ['takeover', 'exec'] as const) {
        progress(`round ${i + 1}/${ROUNDS}: ${via}`);
        rounds.push(await round(fixtures, via, dir));
      }
    }
  } finally {
    killAll(pidsOf(log));
  }
  const rows = (['takeover', 'exec'] as const).map((via) => {
    const rs = rounds.filter((r) => r.via === via);
    const med = (f: (r: Round) => number) => median(rs.map(f));
    return {
      via,
      before: med((r) => r.before),
      migrated: med((r) => r.migrated),
      fresh: med((r) => r.fresh),
      ratioFresh: med((r) => r.migrated / r.fresh),
      ratioBefore: med((r) => r.migrated / r.before),
      failed: rs.reduce((a, r) => a + r.failed, 0),
      streams: rs.reduce((a, r) => a + r.streams, 0),
      completedAfter: Math.min(...rs.map((r) => r.completedAfter)),
    };
  });
  out(`HTTP/2 sessions migrated alive: h2load -c ${CLIENTS} -m ${STREAMS}, ${ROUNDS} rounds per path (medians)`);
  out(
    table(
      [
        'path',
        'req/s before (native)',
        'req/s migrated (bridge)',
        'req/s fresh (native)',
        'migrated / fresh',
        'migrated / before',
        'failed streams',
        'least completed after upgrade',
      ],
      rows.map((r) => [
        r.via,
        r.before.toFixed(0),
        r.migrated.toFixed(0),
        r.fresh.toFixed(0),
        r.ratioFresh.toFixed(2),
        r.ratioBefore.toFixed(2),
        `${r.failed} of ${r.streams}`,
        String(r.completedAfter),
      ]),
    ),
  );
  const file = writeResults(
    'http2-migration',
    startedAt,
    rounded({
      benchmark: 'http2-migration',
      date: startedAt.toISOString(),
      environment: machine(),
      settings: { CLIENTS, STREAMS, RUN_S, UPGRADE_AT_S, FRESH_RUN_S, ROUNDS },
      rows,
      rounds,
    }),
  );
  out(`results: ${file}`);
  if (rows.some((r) => r.failed > 0)) process.exitCode = 1;
}

await main();
