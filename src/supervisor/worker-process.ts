/**
 * One worker process of the app, as the master sees it: spawned with the
 * master's listeners as inherited fds, linked over Node's IPC channel, ready
 * when its generation serves.
 */
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import readline from 'node:readline';
import { BatonError } from '../core/errors.js';
import type { Phase } from '../core/phase.js';
import type { TimerHandle } from '../core/clock.js';
import type { DrainByProtocol } from '../core/drain-counts.js';
import type { ObservedEvent } from '../observe/master-metrics.js';
import { realPlatform, type Platform } from '../platform/platform.js';
import type { HeldListener } from './held-listeners.js';
import { SUPERVISED_ENV, type MasterMessage, type Supervision, type WorkerMessage } from './worker-link.js';
import type { MissingInternal } from '../native/internals.js';
import { decodeWorkerMessage } from './wire.js';

/** The `--import` argument of every worker: supervisor/worker-preload.ts (its master as its host, then zero-code adoption). */
const WORKER_PRELOAD_URL = new URL('./worker-preload.js', import.meta.url).href;

/** Where a worker is in its life, as the master tracks it. */
export type WorkerState =
  /** Spawned; its generation is not serving yet. */
  | 'starting'
  /** Its generation serves (accepts on the shared listeners). */
  | 'ready'
  /** Asked to stop, or replaced by a newer worker in its slot: draining. */
  | 'stopping'
  /** The process is gone. */
  | 'exited';

/** How a worker process ended. */
export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Whether the master asked it to stop (or a successor replaced it). */
  expected: boolean;
}

/** What the master needs to start a worker. */
export interface WorkerSpec {
  slot: number;
  app: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  listeners: readonly HeldListener[];
  /** The slot's upgrade socket directory. */
  socketDir: string;
  readyTimeoutMs: number;
  /** `timeouts.drainMs`: the worker's own drain timeout, so it reports its drain before the master's SIGKILL at drainMs + killGraceMs. */
  drainMs?: number;
  /** `timeouts.livenessMs`: how long the worker, as a predecessor, waits for its successor's Pong after the successor's ready. */
  livenessMs?: number;
  /** Config `maxGenerations`: the worker's bound as a predecessor (StartOptions.maxGenerations). */
  maxGenerations?: number;
  /** The master serves metrics: the worker forwards its diagnostics events (Supervision `observe`). */
  observe?: boolean;
  /**
   * The master's TLS session-ticket keys, base64 by listener name, given to the
   * worker when it asks (over IPC only); absent with config `tlsTicketKeys: false`.
   */
  ticketKeys?: Readonly<Record<string, string>>;
  /**
   * Where the worker's stdout and stderr lines go. Absent: the worker writes
   * to the master's own stdout and stderr (inherited). Given (the master logs
   * to a file): each line is handed to it, so it lands in the one log file
   * that USR1 reopens.
   */
  output?: (line: string, stream: 'stdout' | 'stderr', worker: { slot: number; pid: number }) => void;
}

/** A worker as shown in status output. */
export interface WorkerStatus {
  slot: number;
  pid: number;
  state: WorkerState;
  phase: Phase | undefined;
  generation: number | undefined;
  origin: string | undefined;
  connections: number | undefined;
  /** Requests its generation received (its last answer, or its final count once its drain ended; undefined before it answered). */
  requests: number | undefined;
  /** Internals of Node or ws the worker lacks, each with what degrades (as of its last status answer). */
  degraded: MissingInternal[];
  startedAt: string;
  uptimeMs: number;
}

/** How a worker's connections left when its drain ended: totals, and by protocol (older workers may not say). */
export interface WorkerDrainReport {
  migrated: number;
  drained: number;
  forced: number;
  byProtocol: DrainByProtocol | undefined;
}

/** Events of a {@link WorkerProcess}. */
export interface WorkerEvents {
  /** Its generation serves. */
  ready: [];
  /** It did not become ready (timeout or exit); the message says why. It is killed if still running. */
  failed: [error: BatonError];
  /** Its generation left `serving` by itself: a newer worker took its slot over (the handover drains it). */
  replaced: [];
  /** It bound a listener the master did not have; `server` holds a copy of the listening (or UDP) socket. */
  listener: [name: string, server: net.Server | dgram.Socket];
  /** A listen() of its app failed (the app usually exits next). */
  'listen-failed': [info: { name: string; address: string; code: string | undefined; message: string }];
  /** Its drain ended: how its connections left. */
  drained: [report: WorkerDrainReport];
  /** It forwarded one of its diagnostics events (phase, migration batch) for the master's metrics. */
  observe: [event: ObservedEvent];
  exit: [exit: WorkerExit];
}

/**
 * A running worker process. The master owns it: it stops it with
 * {@link WorkerProcess.stop} or {@link WorkerProcess.kill}; the listener fds
 * given in the spec stay the master's (the child gets copies).
 */
export class WorkerProcess extends EventEmitter<WorkerEvents> {
  readonly slot: number;
  readonly pid: number;
  readonly startedAt = new Date();
  /** Resolves when the process is gone. */
  readonly exited: Promise<WorkerExit>;
  #state: WorkerState = 'starting';
  #phase: Phase | undefined;
  #generation: number | undefined;
  #origin: string | undefined;
  #socketPath: string | undefined;
  #degraded: MissingInternal[] = [];
  #requests: number | undefined;
  #expected = false;
  readonly #child: ChildProcess;
  readonly #platform: Platform;
  /** The master's ticket keys for this worker (WorkerSpec.ticketKeys): only ever sent to it over IPC. */
  readonly #ticketKeys: Readonly<Record<string, string>>;
  #readyTimer: TimerHandle | undefined;
  #killTimer: TimerHandle | undefined;
  readonly #statusWaiters: ((connections: number | undefined) => void)[] = [];

  private constructor(child: ChildProcess, spec: WorkerSpec, platform: Platform) {
    super();
    this.#child = child;
    this.#platform = platform;
    this.#ticketKeys = spec.ticketKeys ?? {};
    const clock = platform.clock;
    this.slot = spec.slot;
    this.pid = child.pid!;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        clock.clearTimeout(this.#readyTimer);
        clock.clearTimeout(this.#killTimer);
        const wasStarting = this.#state === 'starting';
        this.#state = 'exited';
        for (const w of this.#statusWaiters.splice(0)) w(undefined);
        if (wasStarting && !this.#expected) {
          const how = signal ? `signal ${signal}` : `code ${code}`;
          this.emit(
            'failed',
            new BatonError('ERR_BATON_WORKER_FAILED', `worker ${this.slot} (pid ${this.pid}) exited with ${how} before it was ready`),
          );
        }
        const exit: WorkerExit = { code, signal, expected: this.#expected };
        this.emit('exit', exit);
        resolve(exit);
      });
    });
    child.on('message', (raw: unknown, handle: unknown) => {
      const m = decodeWorkerMessage(raw);
      if (!m) return;
      if (m.type === 'listener') {
        if (handle instanceof net.Server || handle instanceof dgram.Socket) this.emit('listener', m.name, handle);
        return;
      }
      if (m.type === 'listen-failed') {
        this.emit('listen-failed', { name: m.name, address: m.address, code: m.code, message: m.message });
        return;
      }
      this.#onMessage(m);
    });
    child.on('error', () => undefined); // IPC write errors after exit; 'exit' reports the end
    this.#readyTimer = clock.setTimeout(() => {
      if (this.#state !== 'starting') return;
      this.emit(
        'failed',
        new BatonError('ERR_BATON_WORKER_FAILED', `worker ${this.slot} (pid ${this.pid}) was not ready within ${spec.readyTimeoutMs} ms`),
      );
      this.kill('SIGKILL');
    }, spec.readyTimeoutMs);
  }

  /**
   * Spawns `node --import <worker preload> <app> <args>` (supervisor/worker-preload.ts: the master as
   * the worker's host, then zero-code adoption) with the listeners as fds 3… (LISTEN_FDS) and
   * an IPC channel (through `platform`). Throws ERR_BATON_WORKER_FAILED when the process cannot be
   * spawned at all.
   */
  static spawn(spec: WorkerSpec, masterPid = process.pid, platform: Platform = realPlatform): WorkerProcess {
    const supervision: Supervision = {
      slot: spec.slot,
      socketDir: spec.socketDir,
      masterPid,
      drainMs: spec.drainMs,
      livenessMs: spec.livenessMs,
      ...(spec.maxGenerations === undefined ? {} : { maxGenerations: spec.maxGenerations }),
      ...(spec.observe ? { observe: true } : {}),
      ticketKeys: spec.ticketKeys !== undefined,
    };
    const child = platform.spawn(
      spec.listeners.map((l) => ({ name: l.name, fd: l.fd })),
      // Zero-code adoption is preloaded: an unmodified app gets its listeners through
      // baton; an app that uses baton's library itself is left alone by it.
      { command: process.execPath, args: ['--import', WORKER_PRELOAD_URL, spec.app, ...spec.args], env: { ...process.env, ...spec.env } },
      {
        ipc: true,
        env: { [SUPERVISED_ENV]: JSON.stringify(supervision) },
        stdio: spec.output ? ['ignore', 'pipe', 'pipe'] : ['inherit', 'inherit', 'inherit'],
      },
    );
    if (child.pid === undefined) {
      throw new BatonError('ERR_BATON_WORKER_FAILED', `worker ${spec.slot}: could not spawn ${process.execPath} ${spec.app}`);
    }
    const output = spec.output;
    if (output) {
      const who = { slot: spec.slot, pid: child.pid };
      readline.createInterface({ input: child.stdout! }).on('line', (line) => output(line, 'stdout', who));
      readline.createInterface({ input: child.stderr! }).on('line', (line) => output(line, 'stderr', who));
    }
    return new WorkerProcess(child, spec, platform);
  }

  get state(): WorkerState {
    return this.#state;
  }

  /**
   * Asks the worker to stop accepting and drain for at most `drainMs`; it gets
   * SIGKILL when still running `killGraceMs` after that. Resolves when it is gone.
   */
  stop(drainMs: number, killGraceMs: number): Promise<WorkerExit> {
    this.#expected = true;
    if (this.#state === 'exited') return this.exited;
    if (this.#state === 'starting') {
      // Not serving yet: nothing to drain.
      this.kill('SIGTERM');
    } else {
      this.#state = 'stopping';
      this.#send({ baton: 'master', type: 'stop', drainMs });
    }
    this.#platform.clock.clearTimeout(this.#killTimer);
    this.#killTimer = this.#platform.clock.setTimeout(() => this.kill('SIGKILL'), drainMs + killGraceMs);
    return this.exited;
  }

  /** Marks the worker as expected to end: its slot's new worker is ready, so its drain is final. */
  retire(): void {
    this.#expected = true;
    if (this.#state === 'ready') this.#state = 'stopping';
  }

  /** The worker generation's upgrade socket, once it reported one. */
  get socketPath(): string | undefined {
    return this.#socketPath;
  }

  /** Asks the worker to take over the live connections of the generation at `socketPath` (a retiring worker of an old master). */
  absorb(socketPath: string): void {
    this.#send({ baton: 'master', type: 'absorb', socketPath });
  }

  /** Sends `signal` to the worker process (ignored when it is gone). A deliberate end: call {@link WorkerProcess.retire} first. */
  kill(signal: NodeJS.Signals): void {
    if (this.#state === 'exited') return;
    try {
      this.#child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Asks the worker for its open connections; undefined when it does not answer within `timeoutMs`. */
  connections(timeoutMs = 500): Promise<number | undefined> {
    if (this.#state === 'exited' || !this.#child.connected) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const clock = this.#platform.clock;
      const timer = clock.setTimeout(() => {
        const i = this.#statusWaiters.indexOf(done);
        if (i >= 0) this.#statusWaiters.splice(i, 1);
        resolve(undefined);
      }, timeoutMs);
      const done = (n: number | undefined) => {
        clock.clearTimeout(timer);
        resolve(n);
      };
      this.#statusWaiters.push(done);
      this.#send({ baton: 'master', type: 'status' });
    });
  }

  /** Its generation's number, once it reported a phase. */
  get generation(): number | undefined {
    return this.#generation;
  }

  /** Requests its generation received, as of its last answer (its final count once its drain ended). */
  get requests(): number | undefined {
    return this.#requests;
  }

  /** Status output (connections asked separately). */
  status(connections: number | undefined): WorkerStatus {
    return {
      slot: this.slot,
      pid: this.pid,
      state: this.#state,
      phase: this.#phase,
      generation: this.#generation,
      origin: this.#origin,
      connections,
      requests: this.#requests,
      degraded: this.#degraded,
      startedAt: this.startedAt.toISOString(),
      uptimeMs: Date.now() - this.startedAt.getTime(),
    };
  }

  #send(m: MasterMessage): void {
    if (!this.#child.connected) return;
    this.#child.send(m, undefined, {}, () => undefined);
  }

  #onMessage(m: WorkerMessage): void {
    if (m.type === 'status') {
      if (Array.isArray(m.degraded)) this.#degraded = m.degraded;
      if (m.requests !== undefined) this.#requests = m.requests;
      for (const w of this.#statusWaiters.splice(0)) w(m.connections);
      return;
    }
    if (m.type === 'observe') {
      this.emit('observe', m.observed);
      return;
    }
    if (m.type === 'drained') {
      if (m.requests !== undefined) this.#requests = m.requests;
      this.emit('drained', { migrated: m.migrated, drained: m.drained, forced: m.forced, byProtocol: m.byProtocol });
      return;
    }
    if (m.type === 'ticket-keys') {
      this.#send({ baton: 'master', type: 'ticket-keys', keys: { ...this.#ticketKeys } });
      return;
    }
    if (m.type !== 'phase') return;
    const previous = this.#phase;
    this.#phase = m.phase;
    this.#generation = m.generation;
    this.#origin = m.origin;
    this.#socketPath = m.socketPath;
    if (m.phase === 'serving' && this.#state === 'starting') {
      this.#platform.clock.clearTimeout(this.#readyTimer);
      this.#state = 'ready';
      this.emit('ready');
    } else if (m.phase === 'draining' && this.#state === 'ready') {
      // Draining without being asked: a newer worker of this slot took over.
      this.#state = 'stopping';
      this.emit('replaced');
    } else if (m.phase === 'serving' && previous === 'draining' && this.#state === 'stopping' && !this.#expected) {
      // Rolled back: the worker that took over died, and this one accepts again.
      this.#state = 'ready';
      this.emit('ready');
    } else if (m.phase === 'failed' && this.#state === 'starting') {
      this.#platform.clock.clearTimeout(this.#readyTimer);
      this.emit('failed', new BatonError('ERR_BATON_WORKER_FAILED', `worker ${this.slot} (pid ${this.pid}): its takeover failed`));
      this.kill('SIGTERM');
    }
  }
}
