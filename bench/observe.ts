/**
 * `npm run bench:observe`: what baton's observability costs a server at
 * steady state when nobody uses it. The same build of the baton-hosted hello
 * server (bench/fixtures/baton-server.ts) runs twice: `on` as shipped
 * (diagnostics channels without subscribers, no metrics loaded) and `off`
 * with `BATON_OBSERVE=off` (no publish, no `hasSubscribers` check). Each is
 * driven by the same keep-alive load (undici, `connections` concurrent
 * requests), `requests` requests per run, in ABBA order over `rounds` rounds so
 * a drift in machine load favours neither; judged on the server's CPU time
 * (every thread's run time, bench/lib/cpu-cost.ts) per request, as the median of the
 * per-round ratios on/off, printed with the `off` baseline.
 *
 * Environment: OBSERVE_ROUNDS (default 8), OBSERVE_REQUESTS (default 50000),
 * OBSERVE_CONNECTIONS (default 32). Results: bench/results/observe-<date>.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchFixture, EventLog, killAll, spawnFixture, tempDir } from './lib/processes.js';
import { mean, median } from './lib/stats.js';
import { abbaRounds } from './lib/throughput.js';
import { cpuSecondsFine, loadH1 } from './lib/cpu-cost.js';

/** One run of one variant. */
export interface ObserveRun {
  round: number;
  variant: 'on' | 'off';
  requests: number;
  failed: number;
  serverCpuUsPerRequest: number;
}

/** The benchmark's result. */
export interface ObserveCost {
  settings: { rounds: number; requests: number; connections: number };
  runs: ObserveRun[];
  /** CPU per request on ÷ off, per round. */
  roundRatios: number[];
  /** Median of the round ratios: the judged figure (1 = no measurable cost). */
  ratio: number;
  /** Mean CPU µs per request with observability off: the baseline the ratio is relative to. */
  baselineCpuUsPerRequest: number;
  cpuUsPerRequest: number;
}

/** Runs the benchmark (see the module comment). */
export async function measureObserveCost(
  o: { rounds: number; requests: number; connections: number; warmupRequests?: number },
  progress: (line: string) => void = () => undefined,
): Promise<ObserveCost> {
  const log = new EventLog();
  const servers: Record<'on' | 'off', { port: number; pid: number }> = {} as never;
  try {
    for (const variant of ['on', 'off'] as const) {
      const env = {
        BATON_SOCKET_DIR: tempDir('baton-observe-'),
        BENCH_NAME: `observe-${variant}`,
        ...(variant === 'off' ? { BATON_OBSERVE: 'off' } : {}),
      };
      const child = spawnFixture(benchFixture('baton-server'), env, log);
      const ready = await log.waitFor((e) => e.event === 'ready' && e.pid === child.pid, `${variant} server ready`, 30_000);
      servers[variant] = { port: (ready.ports as number[])[0]!, pid: child.pid! };
    }
    // Warm-up: both servers' code optimised (JIT) before anything is measured.
    for (const variant of ['on', 'off'] as const)
      await loadH1(servers[variant].port, { connections: o.connections }, o.warmupRequests ?? o.requests);
    progress(`${o.rounds} ABBA rounds of ${o.requests} requests per variant, ${o.connections} keep-alive connections`);
    const runs = await abbaRounds(['on', 'off'] as const, o.rounds, async (variant, round): Promise<ObserveRun> => {
      const { port, pid } = servers[variant];
      const before = cpuSecondsFine(pid);
      const { units: requests, failed } = await loadH1(port, { connections: o.connections }, o.requests);
      const cpuUs = ((cpuSecondsFine(pid) - before) * 1e6) / requests;
      progress(`  round ${round} ${variant}: ${requests} requests, ${cpuUs.toFixed(2)} µs CPU each`);
      return { round, variant, requests, failed, serverCpuUsPerRequest: cpuUs };
    });
    const of = (v: 'on' | 'off') => runs.filter((r) => r.variant === v).map((r) => r.serverCpuUsPerRequest);
    const roundRatios = of('on').map((on, i) => on / of('off')[i]!);
    return {
      settings: { rounds: o.rounds, requests: o.requests, connections: o.connections },
      runs,
      roundRatios,
      ratio: median(roundRatios),
      baselineCpuUsPerRequest: mean(of('off')),
      cpuUsPerRequest: mean(of('on')),
    };
  } finally {
    killAll(Object.values(servers).map((s) => s.pid));
  }
}

/** The result as the lines printed. */
export function formatObserveCost(r: ObserveCost): string {
  return (
    `observability at steady state, unused: ${r.cpuUsPerRequest.toFixed(2)} µs CPU per request against ` +
    `${r.baselineCpuUsPerRequest.toFixed(2)} µs with BATON_OBSERVE=off (baseline); ratio ${r.ratio.toFixed(3)} ` +
    `(median of ${r.roundRatios.length} rounds: ${r.roundRatios.map((x) => x.toFixed(3)).join(', ')})`
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const env = process.env;
  const r = await measureObserveCost(
    {
      rounds: Number(env.OBSERVE_ROUNDS ?? 8),
      requests: Number(env.OBSERVE_REQUESTS ?? 50_000),
      connections: Number(env.OBSERVE_CONNECTIONS ?? 32),
    },
    (line) => console.log(line),
  );
  console.log(formatObserveCost(r));
  const out = fileURLToPath(
    new URL(`../../bench/results/observe-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`, import.meta.url),
  );
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, ...r }, null, 2)}\n`);
  console.log(`results: ${out}`);
}
