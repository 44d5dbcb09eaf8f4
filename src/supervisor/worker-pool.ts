/**
 * The master's workers, by slot: starting them, replacing them on reload (a
 * slot's new worker takes its predecessor over through the slot's upgrade
 * socket, so live connections migrate), restarting crashed ones with backoff,
 * and stopping them.
 */
import { resolveLogFormat } from './logger.js';
import { EventEmitter } from 'node:events';
import type dgram from 'node:dgram';
import type net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { removeDeadTemps } from '../core/atomic-file.js';
import type { TimerHandle } from '../core/clock.js';
import { BatonError } from '../core/errors.js';
import { addByProtocol, type DrainByProtocol } from '../core/drain-counts.js';
import type { ObservedEvent } from '../observe/master-metrics.js';
import { ensurePrivateDir } from '../handover/upgrade-socket.js';
import { newTicketKeys } from '../listeners/ticket-keys.js';
import { realPlatform, type Platform } from '../platform/platform.js';
import type { Config } from './config.js';
import type { HeldListener } from './held-listeners.js';
import { WorkerProcess, type WorkerDrainReport, type WorkerExit, type WorkerSpec, type WorkerStatus } from './worker-process.js';

interface Slot {
  readonly index: number;
  /** The ready worker accepting for this slot. */
  current: WorkerProcess | undefined;
  /** A worker starting up to take the slot (initial start, restart or reload). */
  pending: WorkerProcess | undefined;
  /** Replaced or stopped workers still draining. */
  readonly retiring: Set<WorkerProcess>;
  /** Times of recent crashes (within the restart window). */
  crashes: number[];
  crashLoop: boolean;
  restartTimer: TimerHandle | undefined;
  /** Its app binds a listener the master does not hold and finds it in use: restarting cannot help (until a reload). */
  unconfigured: boolean;
}

/** Counters of the pool's life. */
export interface PoolCounters {
  /** Workers restarted after a crash. */
  restarts: number;
  /** Connections handed alive to a newer worker, drained cleanly, or cut, by workers that ended. */
  migrated: number;
  drained: number;
  forced: number;
}

/** Events of a {@link WorkerPool}. */
export interface PoolEvents {
  /** Something worth logging happened (level, message, details). */
  log: [level: 'info' | 'warn' | 'error', message: string, details: Record<string, unknown>];
  /** A worker started, became ready, failed or exited. */
  change: [];
  /** A worker bound a listener the master does not have (see WorkerProcess 'listener'). */
  listener: [name: string, server: net.Server | dgram.Socket];
  /** A worker's drain ended (already added to the counters). */
  drained: [report: WorkerDrainReport];
  /** A worker forwarded one of its diagnostics events (metrics). */
  observe: [event: ObservedEvent];
}

/** Settings the pool reads from the config on each start or reload. */
type PoolConfig = Pick<
  Config,
  'app' | 'args' | 'env' | 'workers' | 'timeouts' | 'restart' | 'name' | 'consistency' | 'log' | 'metrics' | 'maxGenerations'
> & {
  closeUpgraded?: boolean;
  tlsTicketKeys?: boolean;
};

/**
 * The worker slots of one master. Workers get the master's listeners as
 * inherited fds; the pool never closes those fds (the master does).
 */
export class WorkerPool extends EventEmitter<PoolEvents> {
  readonly #slots: Slot[] = [];
  #listeners: readonly HeldListener[];
  readonly #dir: string;
  #config: PoolConfig;
  /** Whether crashed or missing workers are (re)started. */
  #active = false;
  /** Only the first worker was started (see start()). */
  #staggered = false;
  readonly counters: PoolCounters = { restarts: 0, migrated: 0, drained: 0, forced: 0 };
  /** The drain counts of {@link WorkerPool.counters} by protocol, as the workers reported them. */
  readonly byProtocol: DrainByProtocol = {};
  /** Requests of this pool's workers that exited, by generation number (each worker's last count). */
  readonly #finishedRequests = new Map<string, number>();

  readonly #output: WorkerSpec['output'];
  readonly #platform: Platform;
  /** Listener names reported as unconfigured (reported once each). */
  readonly #unconfigured = new Set<string>();
  /** TLS session-ticket keys by listener name, made once per name for this master's life: every worker, and every reload's, gets the same. */
  readonly #ticketKeys = new Map<string, string>();

  /**
   * `dir` is this master's private directory of worker slot sockets; `output` receives the workers' lines (see WorkerSpec);
   * workers are spawned and timed through `platform`.
   */
  constructor(
    config: PoolConfig,
    listeners: readonly HeldListener[],
    dir: string,
    output?: WorkerSpec['output'],
    platform: Platform = realPlatform,
  ) {
    super();
    this.#platform = platform;
    this.#config = config;
    this.#listeners = listeners;
    this.#dir = dir;
    this.#output = output;
    ensurePrivateDir(dir);
  }

  /** The listeners new workers inherit from now on (a reload with changed listeners). */
  setListeners(listeners: readonly HeldListener[]): void {
    this.#listeners = listeners;
  }

  /** Every worker process, current, starting and draining. */
  get workers(): WorkerProcess[] {
    const out: WorkerProcess[] = [];
    for (const s of this.#slots) {
      if (s.current) out.push(s.current);
      if (s.pending) out.push(s.pending);
      out.push(...s.retiring);
    }
    return out;
  }

  /** True when every slot has a ready worker and none is starting. */
  get allReady(): boolean {
    const slots = this.#slots.slice(0, this.#config.workers);
    return slots.length === this.#config.workers && slots.every((s) => s.current?.state === 'ready' && !s.pending);
  }

  /**
   * The ticket keys of `listeners` (made for a name seen first): for a worker's spec, and for the
   * new master of a binary upgrade (over the masters' IPC channel only). Secrets: never log them.
   */
  ticketKeysFor(listeners: readonly HeldListener[]): Record<string, string> {
    for (const l of listeners) if (!this.#ticketKeys.has(l.name)) this.#ticketKeys.set(l.name, newTicketKeys());
    return Object.fromEntries(listeners.map((l) => [l.name, this.#ticketKeys.get(l.name)!]));
  }

  /**
   * Takes an old master's ticket keys (binary upgrade) as this pool's for those listener names:
   * call before {@link WorkerPool.start}, so every worker gets them. Returns how many names it took.
   */
  inheritTicketKeys(keys: Readonly<Record<string, string>>): number {
    for (const [name, k] of Object.entries(keys)) this.#ticketKeys.set(name, k);
    return Object.keys(keys).length;
  }

  /** Listeners the app binds itself that the master does not hold, found in use by a second worker (see #onListenFailed). */
  get unconfiguredListeners(): string[] {
    return [...this.#unconfigured];
  }

  /** Slots in a crash loop. */
  get crashLooping(): number[] {
    return this.#slots.filter((s) => s.crashLoop).map((s) => s.index);
  }

  /**
   * Starts a worker in every slot that has none, and keeps slots filled from now on.
   * Without any listener yet (an unmodified app, no listeners configured), the
   * first worker starts alone: the listeners it binds are handed to the master
   * and the others inherit them instead of failing with EADDRINUSE.
   */
  start(): void {
    this.#active = true;
    this.#staggered = this.#listeners.length === 0 && this.#config.workers > 1 && !this.#slots.some((s) => s.current);
    const count = this.#staggered ? 1 : this.#config.workers;
    for (let i = 0; i < count; i++) {
      const slot = this.#slot(i);
      if (!slot.current && !slot.pending && !slot.restartTimer) this.#spawn(slot);
    }
  }

  /**
   * The slots (of the first `workers`) where a reload's new worker would make
   * more than `max` generations alive: each with its workers alive, the
   * serving one first, then those still draining.
   */
  crowded(workers: number, max: number): { slot: number; alive: WorkerProcess[] }[] {
    const out: { slot: number; alive: WorkerProcess[] }[] = [];
    for (const slot of this.#slots.slice(0, workers)) {
      const alive = [...(slot.current ? [slot.current] : []), ...slot.retiring];
      if (alive.length + 1 > max) out.push({ slot: slot.index, alive });
    }
    return out;
  }

  /**
   * Reload: with the new settings, starts a new worker in every slot. Each
   * takes over its slot's running worker (which drains once the new one is
   * ready) or, in an empty slot, starts fresh. Slots beyond the new count are
   * stopped. Resolves with the slots whose new worker failed (their old
   * worker serves on).
   */
  async reload(config: PoolConfig): Promise<{ failed: number[] }> {
    const shrinking = this.#slots.slice(config.workers);
    this.#config = config;
    this.#active = true;
    const started: { slot: Slot; worker: WorkerProcess }[] = [];
    for (let i = 0; i < config.workers; i++) {
      const slot = this.#slot(i);
      this.#cancelRestart(slot);
      slot.unconfigured = false; // the new code or config may have fixed it
      // A worker still starting from before is replaced (it never served: nothing to drain).
      if (slot.pending) this.#retire(slot, slot.pending).stop(0, this.#config.timeouts.killGraceMs);
      slot.pending = undefined;
      const worker = this.#spawn(slot);
      if (worker) started.push({ slot, worker });
    }
    for (const slot of shrinking) this.#stopSlot(slot, this.#config.timeouts.drainMs);
    const failed: number[] = [];
    await Promise.all(
      started.map(
        ({ slot, worker }) =>
          new Promise<void>((resolve) => {
            if (worker.state === 'ready') return resolve();
            worker.once('ready', () => resolve());
            worker.once('failed', () => {
              failed.push(slot.index);
              resolve();
            });
          }),
      ),
    );
    return { failed: failed.sort() };
  }

  /**
   * Retires every ready worker without stopping it: no more restarts, and their
   * exits are expected. Returns their upgrade sockets, so another master's
   * workers can take their connections over ({@link WorkerPool.absorb}).
   */
  retireAll(): { slot: number; socketPath: string }[] {
    this.#active = false;
    const out: { slot: number; socketPath: string }[] = [];
    for (const slot of this.#slots) {
      this.#cancelRestart(slot);
      // A worker still starting never served: nothing for another master to take over.
      if (slot.pending) void this.#retire(slot, slot.pending).stop(0, this.#config.timeouts.killGraceMs);
      slot.pending = undefined;
      const w = slot.current;
      if (!w) continue;
      slot.current = undefined;
      if (this.#retire(slot, w).socketPath) out.push({ slot: slot.index, socketPath: w.socketPath! });
    }
    return out;
  }

  /** Asks this pool's ready workers to take over the connections of retiring workers elsewhere (slot by slot, wrapping around). */
  absorb(targets: readonly { slot: number; socketPath: string }[]): number {
    const ready = this.#slots.map((s) => s.current).filter((w): w is WorkerProcess => w?.state === 'ready');
    if (ready.length === 0) return 0;
    for (const t of targets) ready[t.slot % ready.length]!.absorb(t.socketPath);
    return targets.length;
  }

  /**
   * Stops every worker — serving, starting, and retired ones still draining
   * (a retired worker nobody took over would otherwise never end) — draining
   * for at most `drainMs`, and stops restarting them. Resolves when all are gone.
   */
  async stopAll(drainMs: number): Promise<void> {
    this.#active = false;
    for (const slot of this.#slots) {
      this.#stopSlot(slot, drainMs);
      for (const w of slot.retiring) void w.stop(drainMs, this.#config.timeouts.killGraceMs);
    }
    await Promise.all(this.workers.map((w) => w.exited));
  }

  /** Stops the retired workers still draining (nobody took them over); serving and starting workers are untouched. */
  stopRetired(drainMs: number): void {
    for (const slot of this.#slots) for (const w of slot.retiring) void w.stop(drainMs, this.#config.timeouts.killGraceMs);
  }

  /** Status of every worker, with its open connections (asked over IPC; undefined for a worker that does not answer within `timeoutMs`). */
  async status(timeoutMs?: number): Promise<WorkerStatus[]> {
    const workers = this.workers;
    const counts = await Promise.all(workers.map((w) => w.connections(timeoutMs)));
    return workers.map((w, i) => w.status(counts[i]));
  }

  /**
   * Requests this pool's workers received since the pool began, by generation number (as a string):
   * the final counts of workers that exited plus the live workers' counts as of their last answer
   * (call after {@link WorkerPool.status}, which asks them). Not carried over to another master.
   */
  requestsByGeneration(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [g, n] of this.#finishedRequests) out[g] = n;
    for (const w of this.workers) {
      const key = String(w.generation ?? 'unknown');
      if (w.requests !== undefined) out[key] = (out[key] ?? 0) + w.requests;
    }
    return out;
  }

  /** Removes the slot socket directories (after every worker is gone). */
  removeDir(): void {
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }

  /** Adds what a worker's drain report says to the counters. */
  #countDrain(report: WorkerDrainReport): void {
    this.counters.migrated += report.migrated;
    this.counters.drained += report.drained;
    this.counters.forced += report.forced;
    addByProtocol(this.byProtocol, report.byProtocol);
    this.emit('drained', report);
  }

  #stopSlot(slot: Slot, drainMs: number): void {
    this.#cancelRestart(slot);
    for (const w of [slot.current, slot.pending]) {
      if (w) void this.#retire(slot, w).stop(drainMs, this.#config.timeouts.killGraceMs);
    }
    slot.current = undefined;
    slot.pending = undefined;
  }

  /** Moves `w` to its slot's retiring set (its end is expected from now on); the caller clears current/pending. */
  #retire(slot: Slot, w: WorkerProcess): WorkerProcess {
    w.retire();
    slot.retiring.add(w);
    return w;
  }

  #cancelRestart(slot: Slot): void {
    this.#platform.clock.clearTimeout(slot.restartTimer);
    slot.restartTimer = undefined;
  }

  #slot(i: number): Slot {
    while (this.#slots.length <= i) {
      this.#slots.push({
        index: this.#slots.length,
        current: undefined,
        pending: undefined,
        retiring: new Set(),
        crashes: [],
        crashLoop: false,
        restartTimer: undefined,
        unconfigured: false,
      });
    }
    return this.#slots[i]!;
  }

  #spawn(slot: Slot): WorkerProcess | undefined {
    const c = this.#config;
    const socketDir = path.join(this.#dir, `w${slot.index}`);
    let worker: WorkerProcess;
    try {
      ensurePrivateDir(socketDir);
      worker = WorkerProcess.spawn(
        {
          slot: slot.index,
          app: c.app,
          args: c.args,
          env: {
            // baton's own lines in the workers (zero-code) in the master's format.
            BATON_LOG: resolveLogFormat(c.log.format, c.log.file),
            ...c.env,
            ...(c.consistency ? { BATON_CONSISTENCY: '1' } : {}),
            ...(c.closeUpgraded === false ? { BATON_CLOSE_UPGRADED: '0' } : {}),
          },
          listeners: this.#listeners,
          socketDir,
          readyTimeoutMs: c.timeouts.readyMs,
          drainMs: c.timeouts.drainMs,
          livenessMs: c.timeouts.livenessMs,
          maxGenerations: c.maxGenerations,
          observe: c.metrics !== undefined,
          ...(c.tlsTicketKeys !== false ? { ticketKeys: this.ticketKeysFor(this.#listeners) } : {}),
          output: this.#output,
        },
        process.pid,
        this.#platform,
      );
    } catch (err) {
      this.emit('log', 'error', `worker ${slot.index}: ${(err as Error).message}`, {
        event: 'worker-failed',
        code: (err as BatonError).code,
        slot: slot.index,
      });
      this.#crashed(slot);
      return undefined;
    }
    slot.pending = worker;
    this.emit('log', 'info', `worker ${slot.index} starting (pid ${worker.pid})`, {
      event: 'worker-starting',
      slot: slot.index,
      workerPid: worker.pid,
    });
    worker.on('ready', () => this.#onReady(slot, worker));
    worker.on('failed', (err) => {
      this.emit('log', 'error', err.message, { event: 'worker-failed', code: err.code, slot: slot.index, workerPid: worker.pid });
      if (slot.pending === worker) slot.pending = undefined;
      this.#crashed(slot);
      this.emit('change');
    });
    worker.on('drained', (report) => this.#countDrain(report));
    worker.on('listen-failed', (info) => this.#onListenFailed(slot, info));
    worker.on('listener', (name, server) => this.emit('listener', name, server));
    worker.on('observe', (e) => this.emit('observe', e));
    worker.on('exit', (exit) => this.#onExit(slot, worker, exit));
    this.emit('change');
    return worker;
  }

  #onReady(slot: Slot, worker: WorkerProcess): void {
    if (slot.pending === worker) {
      const old = slot.current;
      slot.current = worker;
      slot.pending = undefined;
      if (old) {
        // Usually already draining (the new worker took it over); stop() covers an old
        // worker that was not taken over, e.g. one whose upgrade socket was gone.
        void this.#retire(slot, old).stop(this.#config.timeouts.drainMs, this.#config.timeouts.killGraceMs);
      }
      const now = this.#platform.clock.now();
      slot.crashes = slot.crashes.filter((t) => now - t < this.#config.restart.windowMs);
      if (slot.crashLoop && slot.crashes.length < this.#config.restart.crashLoopCount) slot.crashLoop = false;
      this.emit('log', 'info', `worker ${slot.index} ready (pid ${worker.pid})`, {
        event: 'worker-ready',
        slot: slot.index,
        workerPid: worker.pid,
      });
      if (this.#staggered && this.#active) this.start();
    } else if (slot.retiring.has(worker) && !slot.current) {
      // A rolled-back worker (its taker died after ready) serves its slot again.
      slot.retiring.delete(worker);
      slot.current = worker;
    }
    this.emit('change');
  }

  #onExit(slot: Slot, worker: WorkerProcess, exit: WorkerExit): void {
    // A worker killed before it published its upgrade socket leaves the socket's temporary name behind.
    removeDeadTemps(path.join(this.#dir, `w${slot.index}`));
    const key = String(worker.generation ?? 'unknown');
    if (worker.requests !== undefined) this.#finishedRequests.set(key, (this.#finishedRequests.get(key) ?? 0) + worker.requests);
    slot.retiring.delete(worker);
    if (slot.pending === worker) slot.pending = undefined;
    if (slot.current === worker) {
      slot.current = undefined;
      if (!exit.expected) {
        const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
        this.emit('log', 'error', `worker ${slot.index} (pid ${worker.pid}) died with ${how}`, {
          event: 'worker-died',
          slot: slot.index,
          workerPid: worker.pid,
        });
        this.#crashed(slot);
      }
    }
    if (this.#active && slot.index < this.#config.workers && !slot.current && !slot.pending && !slot.restartTimer) {
      this.#crashed(slot);
    }
    this.emit('change');
  }

  /**
   * A worker's app bound a listener itself (the master holds none of that
   * name) and found it in use: with several workers only the first one can
   * bind it, so restarting would only loop. Reported once per listener, with
   * what to do; the slot is not restarted.
   */
  #onListenFailed(slot: Slot, info: { name: string; address: string; code: string | undefined }): void {
    if (info.code !== 'EADDRINUSE' || this.#listeners.some((l) => l.name === info.name)) return;
    slot.unconfigured = true;
    this.#cancelRestart(slot);
    if (!this.#unconfigured.has(info.name)) {
      this.#unconfigured.add(info.name);
      const err = new BatonError(
        'ERR_BATON_CONFIG_INVALID',
        `worker ${slot.index}: the app binds listener '${info.name}' (${info.address}) itself and it is in use (EADDRINUSE): ` +
          `the master holds no listener '${info.name}', so only one worker can bind it. Configure it ` +
          `(listeners: { ${info.name}: ${/^udp[46] /.test(info.address) ? '{ type: udp4, address, port }' : '{ host, port }'} } in the config) so the master binds it once and shares it with every worker, ` +
          `or run the app unmodified (without baton's library: zero-code adoption shares what it binds)`,
      );
      this.emit('log', 'error', err.message, {
        event: 'listener-unconfigured',
        code: err.code,
        slot: slot.index,
        listener: info.name,
        address: info.address,
      });
    }
    this.emit('change');
  }

  /** Schedules a restart of `slot` with backoff; reports a crash loop once. */
  #crashed(slot: Slot): void {
    if (slot.unconfigured) return;
    if (!this.#active || slot.index >= this.#config.workers || slot.restartTimer || slot.pending || slot.current) return;
    const r = this.#config.restart;
    const now = this.#platform.clock.now();
    slot.crashes = slot.crashes.filter((t) => now - t < r.windowMs);
    slot.crashes.push(now);
    const n = slot.crashes.length;
    const delay = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** (n - 1));
    if (n >= r.crashLoopCount && !slot.crashLoop) {
      slot.crashLoop = true;
      const err = new BatonError(
        'ERR_BATON_CRASH_LOOP',
        `worker ${slot.index} crashed ${n} times within ${r.windowMs} ms; restarting it every ${r.maxDelayMs} ms at most until it stays up`,
      );
      this.emit('log', 'error', err.message, { event: 'crash-loop', code: err.code, slot: slot.index });
    }
    slot.restartTimer = this.#platform.clock.setTimeout(() => {
      slot.restartTimer = undefined;
      if (!this.#active || slot.current || slot.pending || slot.index >= this.#config.workers) return;
      this.counters.restarts++;
      this.#spawn(slot);
    }, delay);
  }
}
