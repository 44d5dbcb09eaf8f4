/**
 * Driving the baton bench fixture (bench/fixtures/baton-server.ts): start a
 * generation, upgrade it by takeover or exec, stop it — each step waits for the
 * fixture's JSON-line events, never for a fixed time.
 */
import { EventLog, benchFixture, monoMs, spawnFixture, type FixtureEvent } from './processes.js';

/** The two upgrade paths of a baton server. */
export type Via = 'takeover' | 'exec';

/** Events after which waiting for anything else is pointless. */
const FAILURES = new Set(['start-failed', 'upgrade-failed', 'upgrade-error']);

/** The start-up marks of a generation (performance.now() inside that process). */
export interface Marks {
  entry: number;
  startCalled: number;
  started: number;
  listened: number;
  ready: number;
}

/** One generation's start-up, from its 'ready' event. */
export interface Ready {
  pid: number;
  generation: number;
  /** Ports of the listeners, in order (http0, http1, …, then h2c when H2C=1). */
  ports: number[];
  port: number;
  marks: Marks;
  /** Adds to a mark to put it on the monotonic clock of {@link monoMs}. */
  offset: number;
  /** ready() resolved, on the monotonic clock. */
  readyAt: number;
}

/** The generation described by a 'ready' event. */
export function readyOf(e: FixtureEvent): Ready {
  const marks = e.marks as Marks;
  const offset = e.clockOffset as number;
  const ports = e.ports as number[];
  return { pid: e.pid, generation: e.generation as number, ports, port: ports[0]!, marks, offset, readyAt: marks.ready + offset };
}

/** One performed upgrade. */
export interface Upgrade {
  via: Via;
  /** Index in the event log from which this upgrade's events are looked for. */
  since: number;
  /** Successor spawned (takeover: by the bench; exec: stamped by the predecessor), monotonic ms. */
  spawnAt: number;
  predecessor: number;
  successor: Ready;
}

/** Starts, upgrades and stops baton fixture servers whose events go to one log. */
export class BatonFixtures {
  /** Pids of every process this driver spawned (generation 1s and takeover successors; exec successors are their children). */
  readonly spawned: number[] = [];

  constructor(
    readonly log: EventLog,
    readonly timeoutMs = 30_000,
    readonly script = benchFixture('baton-server'),
  ) {}

  /** Waits for an event matching `match` (seen since index `since`); a failure event of any fixture rejects. */
  async waitFor(match: (e: FixtureEvent) => boolean, what: string, since = 0, timeoutMs = this.timeoutMs): Promise<FixtureEvent> {
    const e = await this.log.waitFor((ev) => match(ev) || FAILURES.has(ev.event), what, timeoutMs, since);
    if (FAILURES.has(e.event) && !match(e))
      throw new Error(`while waiting for ${what}: pid ${e.pid} reported ${e.event}: ${String(e.code)} ${String(e.message)}`);
    return e;
  }

  /** Starts generation 1 of a fresh server and waits until it is ready. */
  async start(env: NodeJS.ProcessEnv): Promise<Ready> {
    const since = this.log.events.length;
    const child = spawnFixture(this.script, env, this.log);
    this.spawned.push(child.pid!);
    return readyOf(await this.waitFor((e) => e.event === 'ready' && e.pid === child.pid, `generation 1 (pid ${child.pid}) ready`, since));
  }

  /** Stops the server whose current generation is `pid` (SIGTERM → stop()) and waits for its exit. */
  async stop(pid: number): Promise<FixtureEvent> {
    const exited = this.waitFor((e) => e.event === 'exit' && e.pid === pid, `pid ${pid} exit`);
    process.kill(pid, 'SIGTERM');
    return exited;
  }

  /**
   * Performs one upgrade of the server whose current generation is `current`:
   * takeover spawns a new process (stamped here, just before spawn()); exec sends
   * SIGUSR2, and the predecessor stamps just before generation.upgrade() spawns.
   * Resolves once the successor is ready.
   */
  async upgrade(via: Via, current: number, nextGeneration: number, env: NodeJS.ProcessEnv): Promise<Upgrade> {
    const since = this.log.events.length;
    let spawnAt: number;
    if (via === 'takeover') {
      spawnAt = monoMs();
      this.spawned.push(spawnFixture(this.script, env, this.log).pid!);
    } else {
      process.kill(current, 'SIGUSR2');
      spawnAt = (await this.waitFor((e) => e.event === 'exec-spawn' && e.pid === current, `pid ${current} exec-spawn`, since)).at as number;
    }
    const ready = await this.waitFor(
      (e) => e.event === 'ready' && e.generation === nextGeneration,
      `generation ${nextGeneration} ready`,
      since,
    );
    if (ready.origin !== via) throw new Error(`generation ${nextGeneration} started as '${String(ready.origin)}', expected '${via}'`);
    return { via, since, spawnAt, predecessor: current, successor: readyOf(ready) };
  }
}
