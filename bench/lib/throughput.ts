/**
 * Steady-state throughput: the baton-hosted hello server against plain Node
 * with the same handler (wrk, no upgrades). Shared by `npm run bench` and the
 * peer benchmark's scenario 6.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type { BatonFixtures } from './baton-fixture.js';
import { benchFixture, spawnFixture, type EventLog } from './processes.js';
import { median } from './stats.js';
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

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

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
  const runs: ThroughputRun[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    // Alternate the order (ABBA) so a drift in machine load does not favour one server.
    const order = round % 2 === 1 ? (['baton', 'plain'] as const) : (['plain', 'baton'] as const);
    for (const server of order) {
      const { url, pid } = servers[server];
      const cpuBefore = cpuSeconds(pid);
      const r = await runWrk(url, { ...WRK_SHAPE, durationS: o.runS });
      const cpu = cpuSeconds(pid) - cpuBefore;
      runs.push({
        round,
        server,
        requestsPerSec: r.requestsPerSec,
        requests: r.requests,
        errors: r.errors.total,
        latencyP99Ms: r.latencyMs.p99,
        serverCpuUsPerRequest: (cpu * 1e6) / r.requests,
      });
    }
  }
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
