import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Absolute path of a compiled fixture (dist/test/fixtures/<name>.js). */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}.js`, import.meta.url));
}

export { tempDir } from './temp-dirs.js';

export interface FixtureEvent {
  event: string;
  pid: number;
  [key: string]: unknown;
}

/**
 * Watches the JSON-line events of every process of one test — the ones it
 * spawned and, for exec upgrades, their descendants, which share the stdout
 * pipe. Tests wait for events instead of sleeping.
 */
export class EventLog {
  readonly events: FixtureEvent[] = [];
  readonly output: string[] = [];
  #waiters: { match: (e: FixtureEvent) => boolean; resolve: (e: FixtureEvent) => void }[] = [];

  attach(stream: NodeJS.ReadableStream): void {
    const rl = readline.createInterface({ input: stream });
    rl.on('line', (line) => {
      this.output.push(line);
      let e: FixtureEvent;
      try {
        e = JSON.parse(line) as FixtureEvent;
      } catch {
        return;
      }
      if (typeof e?.event !== 'string') return;
      this.events.push(e);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(e)) return true;
        w.resolve(e);
        return false;
      });
    });
  }

  /** Resolves with the first event (already seen or future) that matches; rejects after `timeoutMs`. */
  waitFor(match: (e: FixtureEvent) => boolean, what: string, timeoutMs = 60_000, since = 0): Promise<FixtureEvent> {
    const seen = this.events.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out waiting for ${what}; output so far:\n${this.output.slice(-40).join('\n')}`));
      }, timeoutMs);
      const done = (e: FixtureEvent) => {
        clearTimeout(timer);
        resolve(e);
      };
      this.#waiters.push({ match, resolve: done });
    });
  }

  /** Waits for `event` from `pid` (any pid when undefined). */
  waitEvent(event: string, pid?: number, timeoutMs?: number): Promise<FixtureEvent> {
    return this.waitFor(
      (e) => e.event === event && (pid === undefined || e.pid === pid),
      `${event}${pid ? ` from pid ${pid}` : ''}`,
      timeoutMs,
    );
  }
}

/** Spawns a fixture with node; stdout feeds `log`, stderr is kept for messages. */
export function spawnFixture(
  script: string,
  env: NodeJS.ProcessEnv,
  log: EventLog,
  options: SpawnOptions = {},
  argv: string[] = [],
): ChildProcess {
  const child = spawn(process.execPath, [script, ...argv], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  log.attach(child.stdout!);
  const rl = readline.createInterface({ input: child.stderr! });
  rl.on('line', (line) => log.output.push(`[stderr ${child.pid}] ${line}`));
  return child;
}

/** Kills every pid given (ignoring ones already gone). */
export function killAll(pids: Iterable<number>, signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already exited.
    }
  }
}

/** Pids of every fixture process that reported an event. */
export function pidsOf(log: EventLog): Set<number> {
  return new Set(log.events.map((e) => e.pid));
}

/**
 * Resolves once `pid` no longer exists (killed and reaped). The pid belongs to a
 * grandchild (the predecessor's exec child), whose exit this process cannot
 * observe as an event, so its existence is checked every 20 ms until `timeoutMs`.
 */
export async function waitGone(pid: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return performance.now() - started;
      throw err;
    }
    if (performance.now() - started > timeoutMs) throw new Error(`pid ${pid} still exists after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Upgrades the fixture `current` to generation `generation` by `via` — takeover:
 * a new fixture process; exec: SIGUSR2 to `current` — and resolves with the new
 * generation's 'ready' event (its origin checked). Only events from index
 * `since` of the log on are considered.
 */
export async function upgradeFixture(
  log: EventLog,
  env: NodeJS.ProcessEnv,
  via: 'takeover' | 'exec',
  current: number,
  generation: number,
  since: number,
): Promise<FixtureEvent> {
  if (via === 'takeover') spawnFixture(fixture('server'), env, log);
  else process.kill(current, 'SIGUSR2');
  const ready = await log.waitFor(
    (e) => e.event === 'ready' && e.generation === generation,
    `generation ${generation} ready`,
    60_000,
    since,
  );
  assert.equal(ready.origin, via);
  return ready;
}

/** The drain report in the successor `ready`'s 'predecessor-done' event (the predecessor's Done frame). */
export async function predecessorDone(
  log: EventLog,
  ready: FixtureEvent,
  since: number,
  timeoutMs = 60_000,
): Promise<{ migrated: number; forced: number; drained: number }> {
  const done = await log.waitFor(
    (e) => e.event === 'predecessor-done' && e.pid === ready.pid,
    `generation ${Number(ready.generation) - 1} done`,
    timeoutMs,
    since,
  );
  return (done.args as { migrated: number; forced: number; drained: number }[])[0]!;
}
