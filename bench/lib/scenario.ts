/**
 * What every peer scenario shares: its settings (environment knobs), running
 * a system in a private directory, the schedule of K upgrades, and the shape
 * of a per-system result.
 */
import fs from 'node:fs';
import { EventLog, killAll, monoMs, tempDir } from './processes.js';
import { haveCommand, type RunningSystem, type SystemContext, type SystemDefinition } from './system.js';

const num = (name: string, fallback: number) => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number(v);
};

/** Knobs of a run; each has an environment variable so longer runs need no code change. */
export interface Settings {
  /** K: upgrades per system and scenario (BENCH_UPGRADES). */
  upgrades: number;
  /** Upgrade i starts at warm-up + i × interval after the load started, or when the previous one settled (BENCH_INTERVAL_MS). */
  intervalMs: number;
  /** Load before the first upgrade (BENCH_WARMUP_MS). */
  warmupMs: number;
  /** Load after the last upgrade settled (BENCH_TAIL_MS). */
  tailMs: number;
  /** Longest wait for the previous generation to be gone before going on (BENCH_SETTLE_TIMEOUT_MS). */
  settleTimeoutMs: number;
  /** Scenario 1: wrk connection counts (BENCH_CONNECTIONS, comma-separated) and the steady-state run's length (BENCH_STEADY_S). */
  connections: number[];
  steadyS: number;
  wrkThreads: number;
  /** Scenario 2: h2load clients, concurrent streams per client, seconds per run (one upgrade per run). */
  h2Clients: number;
  h2Streams: number;
  h2RunS: number;
  /** Scenario 3: WebSocket connections and the interval of each one's messages. */
  wsConnections: number;
  wsMessageIntervalMs: number;
  /** Scenario 4: idle keep-alive connections, and the window over which their one use per upgrade is spread. */
  idleConnections: number;
  idleSpreadMs: number;
  /** Scenario 6: seconds per throughput run and rounds (each round runs both servers). */
  throughputRunS: number;
  throughputRounds: number;
}

/** Settings from the environment, with defaults sized for a 2-core machine (~10–20 s per system and scenario). */
export function settingsFromEnv(): Settings {
  return {
    upgrades: num('BENCH_UPGRADES', 5),
    intervalMs: num('BENCH_INTERVAL_MS', 2000),
    warmupMs: num('BENCH_WARMUP_MS', 2000),
    tailMs: num('BENCH_TAIL_MS', 2000),
    settleTimeoutMs: num('BENCH_SETTLE_TIMEOUT_MS', 10_000),
    connections: (process.env.BENCH_CONNECTIONS ?? '64,256').split(',').map(Number),
    steadyS: num('BENCH_STEADY_S', 5),
    wrkThreads: num('BENCH_WRK_THREADS', 2),
    h2Clients: num('BENCH_H2_CLIENTS', 8),
    h2Streams: num('BENCH_H2_STREAMS', 10),
    h2RunS: num('BENCH_H2_RUN_S', 3),
    wsConnections: num('BENCH_WS_CONNECTIONS', 200),
    wsMessageIntervalMs: num('BENCH_WS_INTERVAL_MS', 100),
    idleConnections: num('BENCH_IDLE_CONNECTIONS', 200),
    idleSpreadMs: num('BENCH_IDLE_SPREAD_MS', 1000),
    throughputRunS: num('BENCH_THROUGHPUT_RUN_S', 3),
    throughputRounds: num('BENCH_THROUGHPUT_ROUNDS', 4),
  };
}

/** A result of one system in one scenario: measured, skipped (with the reason) or failed (with the error). */
export type SystemResult<T> =
  ({ system: string; label: string; status: 'ran' } & T) | { system: string; label: string; status: 'skipped' | 'failed'; reason: string };

/** One upgrade, in ms since the start of its scenario's load. */
export interface UpgradeRecord {
  startedAt: number;
  readyAt: number;
  /** null: the previous generation was still there after settleTimeoutMs. */
  goneAt: number | null;
  readyMs: number;
  goneMs: number | null;
}

const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);

/**
 * Runs `body` against a started instance of `def` (private directory, own
 * event log) and stops it afterwards, whatever happened. A system that is
 * unavailable, that lacks a protocol the scenario needs, or whose load tool
 * (`tool`) is not installed, is reported as skipped; one that fails is reported as failed, and the run goes on.
 */
export async function withSystem<T>(
  def: SystemDefinition,
  needs: Omit<SystemContext, 'dir' | 'log'>,
  scenario: string,
  body: (sys: RunningSystem, ctx: { log: EventLog; dir: string }) => Promise<T>,
  tool?: { command: string; install: string },
): Promise<SystemResult<T>> {
  const head = { system: def.id, label: def.label };
  const why =
    (tool && !haveCommand(tool.command) ? `${tool.command} not installed (${tool.install}, or npm run bench:setup)` : null) ??
    def.unavailable() ??
    (needs.h2c && !def.supports.h2c ? 'does not serve h2c' : null) ??
    (needs.websocket && !def.supports.websocket ? 'does not serve WebSocket' : null);
  if (why) {
    progress(`${scenario}: ${def.label}: skipped: ${why}`);
    return { ...head, status: 'skipped', reason: why };
  }
  const dir = tempDir(`baton-bench-${def.id}-`);
  const log = new EventLog();
  let sys: RunningSystem | undefined;
  try {
    progress(`${scenario}: ${def.label}`);
    sys = await def.start({ ...needs, dir, log });
    const data = await body(sys, { log, dir });
    return { ...head, status: 'ran', ...data };
  } catch (err) {
    progress(`${scenario}: ${def.label}: failed: ${(err as Error).stack ?? String(err)}\n${log.output.slice(-10).join('\n')}`);
    return { ...head, status: 'failed', reason: (err as Error).message.split('\n')[0]! };
  } finally {
    const pids = sys?.pids() ?? [];
    await sys?.stop().catch(() => undefined);
    killAll(pids);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const sleepUntil = (at: number) => new Promise((r) => setTimeout(r, Math.max(0, at - monoMs())));

/**
 * Performs `settings.upgrades` upgrades of `sys`: upgrade i starts at
 * `t0 + warmupMs + i × intervalMs` (a schedule, so every system is upgraded at
 * the same moments of its load) or once the previous generation is gone,
 * whichever is later. `before`/`after` run around each upgrade (scenario probes).
 */
export async function upgradeLoop(
  sys: RunningSystem,
  s: Settings,
  t0: number,
  hooks: { before?: (i: number) => Promise<void> | void; after?: (i: number, u: UpgradeRecord) => Promise<void> | void } = {},
): Promise<UpgradeRecord[]> {
  const records: UpgradeRecord[] = [];
  for (let i = 0; i < s.upgrades; i++) {
    await sleepUntil(t0 + s.warmupMs + i * s.intervalMs);
    await hooks.before?.(i);
    const u = await sys.upgrade();
    const gone = await u.gone(s.settleTimeoutMs);
    const r: UpgradeRecord = {
      startedAt: u.startedAt - t0,
      readyAt: u.readyAt - t0,
      goneAt: gone === null ? null : gone - t0,
      readyMs: u.readyAt - u.startedAt,
      goneMs: gone === null ? null : gone - u.startedAt,
    };
    records.push(r);
    await hooks.after?.(i, r);
  }
  return records;
}

/** Sleeps `ms`: only to let load run for a stated time (never to wait for a state). */
export const loadFor = (ms: number) => new Promise((r) => setTimeout(r, ms));
