/**
 * Benchmark of baton's core promise (`npm run bench`). From one run it prints:
 * 1. successor start → ready, split into process start (spawn → start() called),
 *    handover protocol (start() → listeners and state received, timed inside the
 *    successor) and listener set-up (listen() calls → ready() resolved), for the
 *    takeover and exec paths with 1 and 10 listeners; target: protocol ≤ 20 ms
 *    with 10 listeners;
 * 2. successor ready → predecessor stops accepting and exits, without traffic;
 * 3. failed requests under wrk load (64 connections) across 10 takeover and
 *    10 exec upgrades (baton's promise: none);
 * 4. throughput of a baton-hosted hello server against a plain Node http server
 *    with the same handler; target: ≥ 95 %.
 * A table goes to stdout and everything measured to bench/results/handover-<date>.json.
 * Parts 3 and 4 need wrk (`apt-get install wrk`) and are skipped without it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { BatonFixtures, type Via } from './lib/baton-fixture.js';
import { EventLog, killAll, monoMs, pidsOf, tempDir, type FixtureEvent } from './lib/processes.js';
import { machine, writeResults } from './lib/results.js';
import { medP90, rounded, summarize, table, type Summary } from './lib/stats.js';
import { measureThroughput, type Throughput } from './lib/throughput.js';
import { startWrk, wrkAvailable, type WrkResult } from './lib/wrk.js';

/** Upgrades per configuration in parts 1–2. */
const UPGRADES = 10;
/** Upgrades per path under load (part 3). */
const LOAD_UPGRADES = 10;
const LISTENER_COUNTS = [1, 10] as const;
const PROTOCOL_TARGET_MS = 20;
const THROUGHPUT_TARGET = 0.95;
const WRK_SHAPE = { threads: 2, connections: 64 };
/** Part 3: wrk runs until the upgrades are done and is then stopped; this is only its upper bound. */
const LOAD_MAX_S = 120;
/** Part 4: seconds per measured run, warm-up seconds per server, rounds (each round runs both servers). */
const THROUGHPUT_RUN_S = 3;
const THROUGHPUT_WARMUP_S = 1;
const THROUGHPUT_ROUNDS = 6;
const EVENT_TIMEOUT_MS = 30_000;

const log = new EventLog();
const fixtures = new BatonFixtures(log, EVENT_TIMEOUT_MS);
const socketDir = tempDir('baton-bench-');
const out = (line = '') => process.stdout.write(`${line}\n`);
const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
const waitFor = (match: (e: FixtureEvent) => boolean, what: string, since = 0) => fixtures.waitFor(match, what, since);
const startServer = (env: NodeJS.ProcessEnv) => fixtures.start(env);
const stopServer = (pid: number) => fixtures.stop(pid);
const upgrade = (via: Via, current: number, nextGeneration: number, env: NodeJS.ProcessEnv) =>
  fixtures.upgrade(via, current, nextGeneration, env);
const num = (v: unknown): number => v as number;

// ---------------------------------------------------------------- part 1–2

interface StartupSample {
  via: Via;
  listeners: number;
  generation: number;
  /** spawn → start() called: fork/exec, Node boot and module load. */
  processStartMs: number;
  /** of which: spawn → the successor's Node timeOrigin. */
  spawnToNodeOriginMs: number;
  /** of which: Node timeOrigin → first line of the fixture. */
  nodeBootMs: number;
  /** of which: fixture's first line → start() called (dynamic import of baton and the handler). */
  moduleLoadMs: number;
  /** start() called → resolved: upgrade socket or channel, Hello both ways, listeners (fds) and state received. */
  protocolMs: number;
  /** of which: start() called → the predecessor received the Hello ('upgrade-start'). */
  protocolToPredecessorHelloMs: number;
  /** start() resolved → every listen() resolved. */
  listenMs: number;
  /** ready() called → resolved (Ready sent, predecessor's Draining received). */
  readyCallMs: number;
  /** listenMs + readyCallMs. */
  setupMs: number;
  /** spawn → ready() resolved. */
  totalMs: number;
  /** The predecessor's own figure (UpgradeReport.timeToReadyMs): its Hello received → Ready received. */
  predecessorHelloToReadyMs: number;
  /** Successor's ready() resolved → predecessor stopped accepting (its phase 'draining'). */
  readyToPredecessorDrainingMs: number;
  /** Successor's ready() resolved → predecessor about to exit (its phase 'exited'). */
  readyToPredecessorExitMs: number;
}

async function measureStartups(via: Via, listeners: number): Promise<StartupSample[]> {
  const env = { BATON_SOCKET_DIR: socketDir, BENCH_NAME: `startup-${via}-${listeners}`, LISTENERS: String(listeners) };
  let current = (await startServer(env)).pid;
  const samples: StartupSample[] = [];
  for (let g = 2; g <= UPGRADES + 1; g++) {
    const u = await upgrade(via, current, g, env);
    const s = u.successor;
    const at = (mark: number) => mark + s.offset;
    const [helloSeen, upgraded, draining, exited] = await Promise.all(
      ['upgrade-start', 'upgrade', 'draining', 'exit'].map((ev) =>
        waitFor((e) => e.event === ev && e.pid === u.predecessor, `pid ${u.predecessor} ${ev}`, u.since),
      ),
    );
    const readyAt = at(s.marks.ready);
    samples.push({
      via,
      listeners,
      generation: s.generation,
      processStartMs: at(s.marks.startCalled) - u.spawnAt,
      spawnToNodeOriginMs: s.offset - u.spawnAt,
      nodeBootMs: s.marks.entry,
      moduleLoadMs: s.marks.startCalled - s.marks.entry,
      protocolMs: s.marks.started - s.marks.startCalled,
      protocolToPredecessorHelloMs: num(helloSeen!.at) - at(s.marks.startCalled),
      listenMs: s.marks.listened - s.marks.started,
      readyCallMs: s.marks.ready - s.marks.listened,
      setupMs: s.marks.ready - s.marks.started,
      totalMs: readyAt - u.spawnAt,
      predecessorHelloToReadyMs: num((upgraded!.report as { timeToReadyMs: number }).timeToReadyMs),
      readyToPredecessorDrainingMs: num(draining!.at) - readyAt,
      readyToPredecessorExitMs: num(exited!.at) - readyAt,
    });
    current = s.pid;
  }
  await stopServer(current);
  return samples;
}

type StartupKey = Exclude<keyof StartupSample, 'via' | 'listeners' | 'generation'>;
function summarizeStartups(samples: StartupSample[]): Record<StartupKey, Summary> {
  const keys = Object.keys(samples[0]!).filter((k) => k !== 'via' && k !== 'listeners' && k !== 'generation') as StartupKey[];
  return Object.fromEntries(keys.map((k) => [k, summarize(samples.map((s) => s[k]))])) as Record<StartupKey, Summary>;
}

// ---------------------------------------------------------------- part 3

interface LoadRun {
  via: Via;
  upgrades: number;
  wrk: WrkResult;
  /** Responses sent by the server, summed over its generations. */
  servedByServer: number;
  /** spawn → successor ready, under load. */
  spawnToReady: Summary;
  /** successor ready → predecessor exit, under load. */
  readyToPredecessorExit: Summary;
}

/** Starts a fresh server, puts wrk on it, upgrades it LOAD_UPGRADES times by `via`, then stops wrk and the server. */
async function upgradesUnderLoad(via: Via): Promise<LoadRun> {
  const env = { BATON_SOCKET_DIR: socketDir, BENCH_NAME: `load-${via}`, LISTENERS: '1' };
  const first = await startServer(env);
  const url = `http://127.0.0.1:${first.port}/`;
  let current = first.pid;
  const pids = [current];
  progress(`part 3: wrk -t${WRK_SHAPE.threads} -c${WRK_SHAPE.connections} against ${url} during ${LOAD_UPGRADES} ${via} upgrades`);
  const wrk = startWrk(url, { ...WRK_SHAPE, durationS: LOAD_MAX_S });
  // The load reaches generation 1 before the first upgrade.
  await waitFor((e) => e.event === 'first-request' && e.pid === current, `first request under load at pid ${current}`);
  const toReady: number[] = [];
  const toExit: number[] = [];
  for (let g = 2; g <= LOAD_UPGRADES + 1; g++) {
    const u = await upgrade(via, current, g, env);
    const readyAt = u.successor.marks.ready + u.successor.offset;
    toReady.push(readyAt - u.spawnAt);
    await waitFor((e) => e.event === 'upgrade' && e.pid === u.predecessor, `pid ${u.predecessor} upgrade`, u.since);
    // The successor serves this load before the next upgrade.
    await waitFor((e) => e.event === 'first-request' && e.pid === u.successor.pid, `first request at generation ${g}`, u.since);
    const exited = await waitFor((e) => e.event === 'exit' && e.pid === u.predecessor, `pid ${u.predecessor} exit`, u.since);
    toExit.push(num(exited.at) - readyAt);
    current = u.successor.pid;
    pids.push(current);
    if (wrk.ended) throw new Error(`wrk ended (after ${LOAD_MAX_S} s) before the ${via} upgrades did`);
  }
  const result = await wrk.stop();
  await stopServer(current);
  const servedByServer = pids.reduce((sum, pid) => sum + num(log.events.find((e) => e.event === 'exit' && e.pid === pid)?.served ?? 0), 0);
  return {
    via,
    upgrades: LOAD_UPGRADES,
    wrk: result,
    servedByServer,
    spawnToReady: summarize(toReady),
    readyToPredecessorExit: summarize(toExit),
  };
}

// ---------------------------------------------------------------- part 4

const throughput = () =>
  measureThroughput(fixtures, log, socketDir, {
    shape: WRK_SHAPE,
    runS: THROUGHPUT_RUN_S,
    warmupS: THROUGHPUT_WARMUP_S,
    rounds: THROUGHPUT_ROUNDS,
    progress: (line) => progress(`part 4: ${line}`),
  });

// ---------------------------------------------------------------- report

const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');

function printStartups(all: StartupSample[]): Record<string, Record<StartupKey, Summary>> {
  const groups: Record<string, Record<StartupKey, Summary>> = {};
  for (const via of ['takeover', 'exec'] as const) {
    for (const n of LISTENER_COUNTS) groups[`${via}/${n}`] = summarizeStartups(all.filter((s) => s.via === via && s.listeners === n));
  }
  const rows = (cols: StartupKey[]) => Object.entries(groups).map(([k, g]) => [...k.split('/'), ...cols.map((c) => medP90(g[c]))]);
  out(`1. Successor start → ready (ms, median / p90 of ${UPGRADES} upgrades each, no traffic)`);
  out(
    table(
      ['path', 'listeners', 'process start', 'handover protocol', 'listener set-up', 'total (spawn → ready)'],
      rows(['processStartMs', 'protocolMs', 'setupMs', 'totalMs']),
    ),
  );
  out('   process start = spawn → start() called; handover protocol = start() called → resolved (listeners + state');
  out('   received), timed inside the successor; listener set-up = listen() calls → ready() resolved.');
  out('   takeover: spawned by the bench; exec: spawned by the predecessor (/bin/sh trampoline, then node).');
  out();
  out('   Breakdown');
  out(
    table(
      ['path', 'listeners', 'spawn → Node origin', 'Node boot', 'module load', 'start() → pred. Hello', 'listen() calls', 'ready() call'],
      rows(['spawnToNodeOriginMs', 'nodeBootMs', 'moduleLoadMs', 'protocolToPredecessorHelloMs', 'listenMs', 'readyCallMs']),
    ),
  );
  out();
  const verdicts = (['takeover', 'exec'] as const).map((via) => {
    const p90 = groups[`${via}/10`]!.protocolMs.p90;
    return `${via} ${p90.toFixed(1)} ms ${verdict(p90 <= PROTOCOL_TARGET_MS)}`;
  });
  out(`   target: handover protocol ≤ ${PROTOCOL_TARGET_MS} ms with 10 listeners (judged on p90): ${verdicts.join('; ')}`);
  out();
  out(`2. Successor ready → predecessor gone, no traffic (ms, median / p90; negative: before the successor's ready() resolved)`);
  out(
    table(
      ['path', 'listeners', 'ready → predecessor stops accepting', 'ready → predecessor exit'],
      rows(['readyToPredecessorDrainingMs', 'readyToPredecessorExitMs']),
    ),
  );
  out();
  return groups;
}

function printLoad(runs: LoadRun[]): void {
  out(
    `3. Failed requests under wrk load (wrk -t${WRK_SHAPE.threads} -c${WRK_SHAPE.connections}, from before the first upgrade until after the last)`,
  );
  const rows = runs.map((r) => {
    const e = r.wrk.errors;
    return [
      r.via,
      String(r.upgrades),
      `${r.wrk.durationS.toFixed(1)} s`,
      String(r.wrk.requests),
      r.wrk.requestsPerSec.toFixed(0),
      `${e.connect}/${e.read}/${e.write}/${e.timeout}`,
      String(e.non2xx),
      String(e.total),
      String(r.servedByServer),
      `${r.wrk.latencyMs.p99.toFixed(1)} / ${r.wrk.latencyMs.max.toFixed(1)}`,
      medP90(r.spawnToReady),
      medP90(r.readyToPredecessorExit),
    ];
  });
  const sum = (f: (r: LoadRun) => number) => String(runs.reduce((a, r) => a + f(r), 0));
  rows.push([
    'total',
    sum((r) => r.upgrades),
    '',
    sum((r) => r.wrk.requests),
    '',
    '',
    sum((r) => r.wrk.errors.non2xx),
    sum((r) => r.wrk.errors.total),
    sum((r) => r.servedByServer),
    '',
    '',
    '',
  ]);
  out(
    table(
      [
        'path',
        'upgrades',
        'duration',
        'requests',
        'req/s',
        'socket errors c/r/w/t',
        'non-2xx',
        'errors',
        'server sent',
        'latency p99 / max ms',
        'spawn → ready ms',
        'ready → pred. exit ms',
      ],
      rows,
    ),
  );
  const failed = runs.reduce((a, r) => a + r.wrk.errors.total, 0);
  out(`   failed requests across ${sum((r) => r.upgrades)} upgrades: ${failed} (target: 0): ${verdict(failed === 0)}`);
  out('   requests: responses wrk completed; errors: socket errors (connect/read/write/timeout) + non-2xx;');
  out('   server sent: responses of all generations (exceeds requests by those in flight when wrk was stopped).');
  out();
}

function printThroughput(t: Throughput): void {
  out(
    `4. Throughput: baton-hosted hello server vs plain Node http server, same handler (wrk -t${WRK_SHAPE.threads} -c${WRK_SHAPE.connections} -d${THROUGHPUT_RUN_S}s each, alternating)`,
  );
  out(
    table(
      ['round', 'server', 'req/s', 'requests', 'errors', 'latency p99 ms', 'server CPU µs/request'],
      t.runs.map((r) => [
        String(r.round),
        r.server,
        r.requestsPerSec.toFixed(0),
        String(r.requests),
        String(r.errors),
        r.latencyP99Ms.toFixed(2),
        r.serverCpuUsPerRequest.toFixed(1),
      ]),
    ),
  );
  out(`   mean req/s: baton ${t.batonRps.toFixed(0)}, plain ${t.plainRps.toFixed(0)} (${((t.batonRps / t.plainRps) * 100).toFixed(1)} %)`);
  out(`   mean server CPU per request: baton ${t.batonCpuUsPerRequest.toFixed(1)} µs, plain ${t.plainCpuUsPerRequest.toFixed(1)} µs`);
  out(
    `   baton ÷ plain per round: ${t.roundRatios.map((r) => `${(r * 100).toFixed(1)} %`).join(', ')}; median ${(t.ratio * 100).toFixed(1)} %`,
  );
  out(`   target: baton ≥ ${THROUGHPUT_TARGET * 100} % of plain (median of the rounds): ${verdict(t.ratio >= THROUGHPUT_TARGET)}`);
  out();
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const startedAt = new Date();
  const began = monoMs();
  const haveWrk = wrkAvailable();
  const wrkVersion = haveWrk ? (spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]?.trim() ?? '') : null;
  const cpu = os.cpus();
  out(`baton handover benchmark — ${startedAt.toISOString()}`);
  out(
    `node ${process.version}, ${os.platform()} ${os.release()}, ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}${wrkVersion ? `, ${wrkVersion}` : ''}`,
  );
  out();

  const startups: StartupSample[] = [];
  for (const via of ['takeover', 'exec'] as const) {
    for (const n of LISTENER_COUNTS) {
      progress(`part 1–2: ${UPGRADES} ${via} upgrades with ${n} listener${n > 1 ? 's' : ''}`);
      startups.push(...(await measureStartups(via, n)));
    }
  }
  const startupSummary = printStartups(startups);

  let load: LoadRun[] | undefined;
  let tput: Throughput | undefined;
  if (haveWrk) {
    load = [await upgradesUnderLoad('takeover'), await upgradesUnderLoad('exec')];
    printLoad(load);
    tput = await throughput();
    printThroughput(tput);
  } else {
    out('3. Failed requests under load: skipped: wrk not installed (apt-get install wrk)');
    out();
    out('4. Throughput vs plain Node http: skipped: wrk not installed (apt-get install wrk)');
    out();
  }

  const protocol10 = Object.fromEntries((['takeover', 'exec'] as const).map((v) => [v, startupSummary[`${v}/10`]!.protocolMs.p90]));
  const results = rounded({
    benchmark: 'handover',
    date: startedAt.toISOString(),
    durationS: (monoMs() - began) / 1000,
    environment: { ...machine(), wrk: wrkVersion },
    settings: { UPGRADES, LOAD_UPGRADES, LISTENER_COUNTS, WRK_SHAPE, LOAD_MAX_S, THROUGHPUT_RUN_S, THROUGHPUT_WARMUP_S, THROUGHPUT_ROUNDS },
    startup: {
      summary: startupSummary,
      target: {
        protocolMsMax: PROTOCOL_TARGET_MS,
        judgedOn: 'p90, 10 listeners',
        p90: protocol10,
        pass: Object.values(protocol10).every((v) => v <= PROTOCOL_TARGET_MS),
      },
      samples: startups,
    },
    underLoad: load
      ? {
          runs: load.map((r) => ({ ...r, wrk: { ...r.wrk, output: r.wrk.output.split('\n') } })),
          requests: load.reduce((a, r) => a + r.wrk.requests, 0),
          failedRequests: load.reduce((a, r) => a + r.wrk.errors.total, 0),
        }
      : { skipped: 'wrk not installed (apt-get install wrk)' },
    throughput: tput
      ? { ...tput, target: { ratioMin: THROUGHPUT_TARGET, pass: tput.ratio >= THROUGHPUT_TARGET } }
      : { skipped: 'wrk not installed (apt-get install wrk)' },
  });
  const file = writeResults('handover', startedAt, results);
  out(`total run ${results.durationS.toFixed(1)} s; results: ${file}`);
}

try {
  await main();
} catch (err) {
  process.exitCode = 1;
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.stderr.write(`last fixture output:\n${log.output.slice(-30).join('\n')}\n`);
} finally {
  killAll(pidsOf(log));
  fs.rmSync(socketDir, { recursive: true, force: true });
}
