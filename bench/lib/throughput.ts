/**
 * Steady-state throughput: the baton-hosted hello server against plain Node
 * with the same handler (wrk, no upgrades). Shared by `npm run bench` and the
 * peer benchmark's scenario 6.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type { BatonFixtures } from './baton-fixture.js';
import { benchFixture, spawnFixture, type EventLog } from './processes.js';
import { mean, median } from './stats.js';
import { runWrk } from './wrk.js';

/** One wrk run against one of the two servers. */
export interface ThroughputRun {
  round: number;
  server: 'baton' | 'plain';
  requestsPerSec: number;
  requests: number;
  errors: number;
  latencyP99Ms: number;
  /** The server process's CPU time (user + system) per completed request. */
  serverCpuUsPerRequest: number;
}

/** Both servers' runs and the judged ratio. */
export interface Throughput {
  runs: ThroughputRun[];
  /** baton req/s ÷ plain req/s of each round (the two runs of a round are back to back). */
  roundRatios: number[];
  /** Median of the round ratios: the judged figure, robust to one disturbed run. */
  ratio: number;
  batonRps: number;
  plainRps: number;
  batonCpuUsPerRequest: number;
  plainCpuUsPerRequest: number;
}

/** Clock ticks per second of /proc/<pid>/stat times. */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * `rounds` rounds of one `measure` per variant, back to back, alternating the order (ABBA: A B,
 * B A, …) so a drift in machine load favours neither. Resolves with every run, in run order.
 */
export async function abbaRounds<V extends string, R>(
  variants: readonly [V, V],
  rounds: number,
  measure: (variant: V, round: number) => Promise<R>,
): Promise<R[]> {
  const runs: R[] = [];
  for (let round = 1; round <= rounds; round++) {
    const [a, b] = variants;
    for (const variant of round % 2 === 1 ? [a, b] : [b, a]) runs.push(await measure(variant, round));
  }
  return runs;
}

/** Runs `work` (resolving with the requests it completed) and returns those and process `pid`'s CPU µs per request over it. */
export async function cpuPerRequest<R extends { requests: number }>(pid: number, work: () => Promise<R>): Promise<R & { cpuUs: number }> {
  const before = cpuSeconds(pid);
  const r = await work();
  return { ...r, cpuUs: ((cpuSeconds(pid) - before) * 1e6) / r.requests };
}

/** How {@link measureThroughput} runs wrk. */
export interface ThroughputOptions {
  shape: { threads: number; connections: number };
  runS: number;
  warmupS: number;
  rounds: number;
  progress?: (line: string) => void;
}

/**
 * Throughput of the baton-hosted hello server against a plain Node http server
 * with the same handler: a warm-up each, then `rounds` rounds of one wrk run per
 * server, back to back, alternating the order (ABBA) so a drift in machine load
 * does not favour one; judged on the median of the per-round ratios.
 */
export async function measureThroughput(
  fixtures: BatonFixtures,
  log: EventLog,
  socketDir: string,
  o: ThroughputOptions,
): Promise<Throughput> {
  const WRK_SHAPE = o.shape;
  const baton = await fixtures.start({ BATON_SOCKET_DIR: socketDir, BENCH_NAME: 'throughput', LISTENERS: '1' });
  const plainChild = spawnFixture(benchFixture('plain-server'), {}, log);
  const plain = await fixtures.waitFor((e) => e.event === 'listening' && e.pid === plainChild.pid, 'plain server listening');
  const servers = {
    baton: { url: `http://127.0.0.1:${baton.port}/`, pid: baton.pid },
    plain: { url: `http://127.0.0.1:${plain.port as number}/`, pid: plainChild.pid! },
  };
  o.progress?.(`warm-up ${o.warmupS} s each, then ${o.rounds} rounds of ${o.runS} s per server`);
  for (const server of ['baton', 'plain'] as const) await runWrk(servers[server].url, { ...WRK_SHAPE, durationS: o.warmupS });
  const runs = await abbaRounds(['baton', 'plain'] as const, o.rounds, async (server, round): Promise<ThroughputRun> => {
    const { url, pid } = servers[server];
    const r = await cpuPerRequest(pid, async () => {
      const w = await runWrk(url, { ...WRK_SHAPE, durationS: o.runS });
      return { requests: w.requests, w };
    });
    return {
      round,
      server,
      requestsPerSec: r.w.requestsPerSec,
      requests: r.requests,
      errors: r.w.errors.total,
      latencyP99Ms: r.w.latencyMs.p99,
      serverCpuUsPerRequest: r.cpuUs,
    };
  });
  const plainExit = fixtures.waitFor((e) => e.event === 'exit' && e.pid === plainChild.pid, 'plain server exit');
  plainChild.kill('SIGTERM');
  await Promise.all([plainExit, fixtures.stop(baton.pid)]);
  const of = (server: 'baton' | 'plain', f: (r: ThroughputRun) => number) => runs.filter((r) => r.server === server).map(f);
  const roundRatios = of('baton', (r) => r.requestsPerSec).map((rps, i) => rps / of('plain', (r) => r.requestsPerSec)[i]!);
  return {
    runs,
    roundRatios,
    ratio: median(roundRatios),
    batonRps: mean(of('baton', (r) => r.requestsPerSec)),
    plainRps: mean(of('plain', (r) => r.requestsPerSec)),
    batonCpuUsPerRequest: mean(of('baton', (r) => r.serverCpuUsPerRequest)),
    plainCpuUsPerRequest: mean(of('plain', (r) => r.serverCpuUsPerRequest)),
  };
}
