/**
 * `npm run bench:steady`: what hosting under baton costs a server at steady
 * state, in server CPU time per unit of work, against plain Node with the same
 * handlers (bench/fixtures/hello-handler.ts). Three variants run side by side:
 * - `plain`: bench/fixtures/plain-server.ts on plain Node;
 * - `library`: bench/fixtures/baton-server.ts (start(), listen(), ready(),
 *   WebSockets registered for migration);
 * - `run`: the unmodified plain-server.ts under `baton run` (CPU of the wrapper
 *   and the app together).
 * For each protocol — HTTP/1.1 keep-alive requests, h2c streams, WebSocket
 * echo messages — `rounds` ABBA rounds of a fixed amount of work per variant
 * (bench/lib/cpu-cost.ts); printed: median CPU µs per unit, the ratio to
 * `plain` (median of the per-round ratios) with its range, and the load average.
 *
 * Environment: STEADY_ROUNDS (default 8), STEADY_REQUESTS (h1 and h2c, default
 * 30000), STEADY_MESSAGES (ws, default 30000), STEADY_CONNECTIONS (default 16),
 * STEADY_PROTOCOLS (default `h1,h2c,ws`), STEADY_VARIANTS (default
 * `plain,library,run`). Results: bench/results/steady-<date>.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareCpuCost, formatCpuCost, type CostComparison, type CostServer, type Protocol } from './lib/cpu-cost.js';
import { benchFixture, EventLog, killAll, spawnFixture, tempDir } from './lib/processes.js';

/** The server variants compared. */
export type HostingVariant = 'plain' | 'library' | 'run';

/** The CLI of this build (dist/src/cli/main.js). */
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Starts one variant with an HTTP/1.1 + WebSocket listener and an h2c listener; resolves once it serves. */
async function startVariant(variant: HostingVariant, log: EventLog, pids: number[]): Promise<CostServer> {
  if (variant === 'library') {
    const child = spawnFixture(
      benchFixture('baton-server'),
      { BATON_SOCKET_DIR: tempDir('baton-steady-'), BENCH_NAME: 'steady', WEBSOCKET: '1', H2C: '1' },
      log,
    );
    pids.push(child.pid!);
    const ready = await log.waitFor((e) => e.event === 'ready' && e.pid === child.pid, 'library server ready', 30_000);
    const ports = ready.ports as number[];
    return { port: ports[0]!, h2cPort: ports[ports.length - 1], pids: [child.pid!] };
  }
  const env = { WEBSOCKET: '1', H2C_PORT: '0' };
  const child =
    variant === 'plain'
      ? spawnFixture(benchFixture('plain-server'), env, log)
      : spawnFixture(cli, { ...env, PORT: '0' }, log, {}, [
          'run',
          '--name',
          'steady',
          '--socket-dir',
          tempDir('baton-steady-'),
          benchFixture('plain-server'),
        ]);
  pids.push(child.pid!);
  // Under `baton run` the app is the wrapper's child and shares its stdout.
  const listening = await log.waitFor(
    (e) => e.event === 'listening' && (variant === 'plain' ? e.pid === child.pid : e.pid !== child.pid && !pids.includes(e.pid)),
    `${variant} server listening`,
    30_000,
  );
  if (variant === 'run') pids.push(listening.pid);
  const own = variant === 'plain' ? [child.pid!] : [child.pid!, listening.pid];
  return { port: listening.port as number, h2cPort: listening.h2cPort as number, pids: own };
}

/** Runs the comparison (see the module comment), one protocol after the other, on the same three servers. */
export async function measureSteadyState(
  o: {
    rounds: number;
    requests: number;
    messages: number;
    connections: number;
    protocols: Protocol[];
    variants: HostingVariant[];
    warmupUnits?: number;
  },
  progress: (line: string) => void = () => undefined,
): Promise<CostComparison[]> {
  const log = new EventLog();
  const pids: number[] = [];
  try {
    const servers: Record<string, CostServer> = {};
    for (const v of o.variants) servers[v] = await startVariant(v, log, pids);
    const results: CostComparison[] = [];
    for (const protocol of o.protocols) {
      const units = protocol === 'ws' ? o.messages : o.requests;
      const r = await compareCpuCost(
        servers,
        { protocol, baseline: o.variants[0]!, rounds: o.rounds, units, connections: o.connections, warmupUnits: o.warmupUnits },
        progress,
      );
      progress(formatCpuCost(r));
      results.push(r);
    }
    return results;
  } finally {
    killAll(pids);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const env = process.env;
  const list = <T extends string>(s: string) => s.split(',').map((x) => x.trim()) as T[];
  const results = await measureSteadyState(
    {
      rounds: Number(env.STEADY_ROUNDS ?? 8),
      requests: Number(env.STEADY_REQUESTS ?? 30_000),
      messages: Number(env.STEADY_MESSAGES ?? 30_000),
      connections: Number(env.STEADY_CONNECTIONS ?? 16),
      protocols: list<Protocol>(env.STEADY_PROTOCOLS ?? 'h1,h2c,ws'),
      variants: list<HostingVariant>(env.STEADY_VARIANTS ?? 'plain,library,run'),
    },
    (line) => console.log(line),
  );
  console.log('\nsummary');
  for (const r of results) console.log(formatCpuCost(r));
  const out = fileURLToPath(
    new URL(`../../bench/results/steady-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`, import.meta.url),
  );
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2)}\n`);
  console.log(`results: ${out}`);
}
