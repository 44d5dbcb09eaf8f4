/**
 * Fakes of the OS seam (src/platform/platform.ts) for the fast tier: a clock
 * the test advances by hand, child processes that do what the test tells
 * them, and this process's signals raised by the test. Nothing here touches
 * the kernel; the policy code under test is the real one.
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import type { Clock, TimerHandle } from '../../src/core/clock.js';
import type { spawnWithListeners } from '../../src/handover/exec.js';
import type { Platform, ProcessEvent, ProcessPort } from '../../src/platform/platform.js';

/** A clock that stands still until {@link FakeClock.advance}. */
export class FakeClock implements Clock {
  #now = 0;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#timers.delete(handle as unknown as number);
  }

  /** Delays (from now) of the timers still pending, soonest first. */
  get pending(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#now).sort((a, b) => a - b);
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way
   * in order (timers those set included), with microtasks run after each.
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets pending promise callbacks and nextTicks run (a few turns: chains of them). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

let nextPid = 900_000;

/** What {@link FakePlatform.spawn} was called with, and the child it returned. */
export interface Spawned {
  listeners: readonly { name: string; fd: number }[];
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  child: FakeChild;
}

/**
 * A child process (worker or new master) the test plays: it records what it
 * is sent and the signals it gets; by default it exits when signalled or told
 * to stop, as a real worker would.
 */
export class FakeChild extends EventEmitter {
  readonly pid = nextPid++;
  connected = true;
  readonly sent: unknown[] = [];
  readonly signals: NodeJS.Signals[] = [];
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Exit when it gets a signal (SIGTERM, SIGKILL) or a stop message. */
  obedient = true;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();

  send(message: unknown, _handle?: unknown, _options?: unknown, callback?: (err: Error | null) => void): boolean {
    if (!this.connected) return false;
    this.sent.push(message);
    const m = message as { baton?: string; type?: string };
    if (m.baton === 'master' && m.type === 'status')
      queueMicrotask(() => this.message({ baton: 'worker', type: 'status', connections: 0 }));
    if (m.baton === 'master' && m.type === 'stop' && this.obedient) queueMicrotask(() => this.exit(0));
    callback?.(null);
    return true;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.signals.push(signal);
    if (this.obedient || signal === 'SIGKILL') queueMicrotask(() => this.exit(null, signal));
    return true;
  }

  /** Messages sent to it of one type. */
  sentOf(type: string): unknown[] {
    return this.sent.filter((m) => (m as { type?: string }).type === type);
  }

  /** It sends `message` to the parent (over the IPC channel). */
  message(message: unknown): void {
    if (this.connected) this.emit('message', message, undefined);
  }

  /** As a worker: its generation reports `phase`. */
  phase(phase: string, socketPath = `/fake/${this.pid}.sock`): void {
    this.message({ baton: 'worker', type: 'phase', phase, generation: 1, origin: 'supervisor', socketPath });
  }

  /** The process ends (once). */
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.exitCode !== null || this.signalCode !== null) return;
    this.exitCode = code;
    this.signalCode = signal;
    const wasConnected = this.connected;
    this.connected = false;
    if (wasConnected) this.emit('disconnect');
    this.emit('exit', code, signal);
  }

  disconnect(): void {
    if (!this.connected) return;
    this.connected = false;
    this.emit('disconnect');
  }

  unref(): void {}
}

/** This process as the test plays it: signals are raised by the test, the IPC channel is a recorder. */
export class FakeProcess implements ProcessPort {
  readonly #events = new EventEmitter();
  hasChannel = false;
  connected = false;
  readonly sent: unknown[] = [];
  exitCode: number | undefined;
  keptAlive = 0;

  on(event: ProcessEvent, listener: (...args: never[]) => void): void {
    this.#events.on(event, listener as () => void);
  }

  off(event: ProcessEvent, listener: (...args: never[]) => void): void {
    this.#events.off(event, listener as () => void);
  }

  /** Delivers `event` (a signal, 'message', 'disconnect') to the listeners. */
  raise(event: ProcessEvent, ...args: unknown[]): void {
    this.#events.emit(event, ...args);
  }

  listeners(event: ProcessEvent): number {
    return this.#events.listenerCount(event);
  }

  /** What the fake old master answers a new master's request for its TLS session-ticket keys (undefined: no answer). */
  ticketKeys: Record<string, string> | undefined = {};

  send(message: unknown): void {
    if (!this.connected) return;
    this.sent.push(message);
    const m = message as { baton?: string; type?: string };
    const keys = this.ticketKeys;
    if (m.baton === 'new-master' && m.type === 'ticket-keys-wanted' && keys !== undefined)
      queueMicrotask(() => this.raise('message', { baton: 'old-master', type: 'ticket-keys', keys }));
  }

  disconnect(): void {
    if (!this.connected) return;
    this.connected = false;
    this.#events.emit('disconnect');
  }

  unrefChannel(): void {}

  setExitCode(code: number): void {
    this.exitCode = code;
  }

  keepAlive(): () => void {
    this.keptAlive++;
    return () => void this.keptAlive--;
  }
}

/** The whole fake OS. `spawned` lists every process started through it, in order. */
export class FakePlatform implements Platform {
  readonly clock = new FakeClock();
  readonly process = new FakeProcess();
  readonly spawned: Spawned[] = [];
  /** Called with each new child before spawn returns (e.g. to make it disobedient). */
  onSpawn: ((s: Spawned) => void) | undefined;

  /** The fast tier reaches no addon through the seam: a call is a bug in the test or a leak in the seam. */
  native = (): never => {
    throw new Error('FakePlatform: the native addon was called');
  };

  spawn: typeof spawnWithListeners = (listeners, exec = {}, options = {}) => {
    const s: Spawned = { listeners, args: exec.args ?? [], env: { ...exec.env, ...options.env }, child: new FakeChild() };
    this.spawned.push(s);
    this.onSpawn?.(s);
    return s.child as unknown as ChildProcess;
  };

  /** Children still running. */
  get running(): FakeChild[] {
    return this.spawned.map((s) => s.child).filter((c) => c.exitCode === null && c.signalCode === null);
  }
}
