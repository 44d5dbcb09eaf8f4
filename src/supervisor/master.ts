/**
 * The master process of `baton start`, in nginx's image: it owns the
 * listening sockets and the pid file, runs the workers, and answers signals —
 * TERM/INT fast exit, QUIT graceful exit, HUP reload, USR1 reopen logs, USR2
 * binary upgrade (a new master from the code and Node binary on disk inherits
 * the listeners), WINCH graceful stop of the workers of a superseded master.
 */
import type { TimerHandle } from '../core/clock.js';
import { failpoint } from '../core/failpoint.js';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { readPidFile, removeOwnPidFile, renameDurable, writeFileAtomic, writePidFile } from '../core/atomic-file.js';
import { BatonError, asError } from '../core/errors.js';
import type { MasterCounters } from '../observe/master-metrics.js';
import { StateMachine } from '../core/phase.js';
import { alive } from '../core/proc.js';
import { takeListenFds } from '../handover/inherit.js';
import { ensurePrivateDir } from '../handover/upgrade-socket.js';
import { realPlatform, type Platform } from '../platform/platform.js';
import { loadConfig, type Config, type ConfigOverrides } from './config.js';
import { ControlServer, controlRequest, controlSocketPath } from './control.js';
import { HeldListeners, bindListener } from './held-listeners.js';
import { createSupervisorLog, type SupervisorLog } from './logger.js';
import { SdNotify } from './sd-notify.js';
import { WorkerPool } from './worker-pool.js';
import { decodeMasterLinkMessage, decodeStateFileByProtocol, decodeStateFileCounters, type MasterLinkMessage } from './wire.js';
import { addByProtocol, type DrainByProtocol } from '../core/drain-counts.js';
import { closeQuietly } from '../native/socket-info.js';
import { phaseBegins, publishPhase } from '../core/channels.js';
import type { MasterMetrics } from '../observe/master-metrics.js';
import { METRICS_FD_NAME, takeMetricsFd } from '../observe/metrics-fd.js';

/**
 * The phases of a master. Every transition is emitted as `'phase'` and logged.
 *
 * ```
 * starting ──► running ◄──► reloading
 *                │  ▲
 *    USR2        ▼  │ new master failed or exited
 *            upgrading ──► superseded ◄──► standby (WINCH; HUP restarts the workers)
 *                              │ new master exited ──► running
 * any ──► stopping ──► exited
 * ```
 */
export type MasterPhase =
  /** Binding listeners, starting the first workers. */
  | 'starting'
  /** Workers serve; this is the only (or the newest) master. */
  | 'running'
  /** HUP: new workers are taking the old ones over. */
  | 'reloading'
  /** USR2: a new master is starting; this one still serves. */
  | 'upgrading'
  /** A newer master is ready; this one's workers serve alongside it until WINCH. */
  | 'superseded'
  /** WINCH: this master's workers are stopped; it stays as a fallback. */
  | 'standby'
  /** QUIT/TERM/INT: workers are stopping. */
  | 'stopping'
  /** Everything is closed. Terminal. */
  | 'exited';

const allowed: Readonly<Record<MasterPhase, readonly MasterPhase[]>> = {
  starting: ['running', 'stopping'],
  running: ['reloading', 'upgrading', 'stopping'],
  reloading: ['running', 'stopping'],
  upgrading: ['running', 'superseded', 'stopping'],
  superseded: ['standby', 'running', 'stopping'],
  standby: ['superseded', 'running', 'stopping'],
  stopping: ['exited'],
  exited: [],
};

/** Set in a new master's environment by the master that started it (USR2). */
export const PARENT_MASTER_ENV = 'BATON_PARENT_MASTER';
/** The inherited listeners a new master keeps although its config does not name them (adopted from workers; JSON array). */
const ADOPTED_LISTENERS_ENV = 'BATON_ADOPTED_LISTENERS';

function parseNames(raw: string | undefined): string[] {
  try {
    const v = JSON.parse(raw ?? '[]') as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** What `baton start` passes to {@link Master.start}. */
export interface MasterOptions {
  /** The config file, re-read on HUP. */
  configFile: string | undefined;
  /** Command-line settings that win over the file (kept across reloads). */
  overrides: ConfigOverrides;
  env?: NodeJS.ProcessEnv;
  /** The OS the master works through (signals, its IPC channel, spawning, timers); the real one by default, fakes in unit tests. */
  platform?: Platform;
}

/** A master's status (control socket, `baton status`). */
export interface MasterStatus {
  pid: number;
  name: string;
  phase: MasterPhase;
  /** `current`: owns the pid file; `new`: started by a still-running old master; `old`: a newer master exists. */
  role: 'current' | 'new' | 'old';
  startedAt: string;
  uptimeMs: number;
  config: string | undefined;
  pidFile: string;
  parentPid: number | undefined;
  childPid: number | undefined;
  listeners: ReturnType<HeldListeners['status']>;
  workers: Awaited<ReturnType<WorkerPool['status']>>;
  workersWanted: number;
  crashLoop: number[];
  counters: MasterCounters;
  /**
   * Requests this master's workers received since it started, by generation number: exited workers'
   * final counts plus live ones' as of this status (not persisted: a new master starts from none).
   * What `baton upgrade --report` draws as requests per second.
   */
  requests: Record<string, number>;
  /** {@link MasterCounters} `migrated`, `drained` and `forced` by protocol (http1, http2, websocket, tls, socket), persisted with them; counts from before baton reported protocols are in none. */
  byProtocol: DrainByProtocol;
  lastError: string | undefined;
  /** Reload requests (HUP) received, and the outcome of the last reload: what `baton reload` waits for. */
  reload: ReloadStatus;
  /** The last binary upgrade this master saw end (as the new master that became ready, or the old one whose new master failed). */
  upgrade: { last: { result: 'done' | 'failed'; at: string } | undefined; lastSuccessAt: string | undefined };
}

/** Reload bookkeeping in a master's status. */
export interface ReloadStatus {
  /** Reload requests (HUP) received by this master so far. */
  requests: number;
  /** The last finished reload, if any. */
  last: ReloadOutcome | undefined;
  /** When the last reload with result `done` (or `resumed`) ended. */
  lastSuccessAt?: string;
}

/** How a reload ended. */
export interface ReloadOutcome {
  /** The reload covered every request up to this number (later HUPs during a reload get one more reload). */
  request: number;
  /** `done`: every worker runs the new code; `failed`: some new workers failed (their old ones serve on); `refused`: nothing changed; `resumed`: a standby master restarted its workers. */
  result: 'done' | 'failed' | 'refused' | 'resumed';
  message: string;
  at: string;
}

/** The state file: what the next master reads. */
interface PersistedState {
  version: 1;
  name: string;
  masterPid: number;
  updatedAt: string;
  config: Omit<Config, 'source'> & { source: string | undefined };
  counters: MasterCounters;
  byProtocol?: DrainByProtocol;
}

/** The supervisor's master. Create with {@link Master.start}; it runs until {@link Master.exited}. */
export class Master extends EventEmitter<{ phase: [to: MasterPhase, from: MasterPhase] }> {
  readonly pid = process.pid;
  readonly startedAt = new Date();
  readonly #options: MasterOptions;
  readonly #platform: Platform;
  #config: Config;
  readonly #logger: SupervisorLog;
  #listeners: HeldListeners;
  readonly #pool: WorkerPool;
  readonly #phases = new StateMachine<MasterPhase>('starting', allowed);
  readonly #notify: SdNotify;
  #control: ControlServer | undefined;
  /** The old master that started this one, while it runs. */
  #parentPid: number | undefined;
  /** The old master told this one it is stopping (it exits once its workers drained). */
  #parentStopping = false;
  /** The new master this one started (USR2), while it runs. */
  #child: ChildProcess | undefined;
  #counters: MasterCounters;
  /** The persisted part of the counters' drain counts by protocol (the pool's are added in status). */
  readonly #byProtocol: DrainByProtocol;
  #lastError: string | undefined;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #reloadRequests = 0;
  #lastReload: ReloadOutcome | undefined;
  #lastReloadSuccessAt: string | undefined;
  #lastUpgrade: MasterStatus['upgrade'] = { last: undefined, lastSuccessAt: undefined };
  /** The metrics endpoint (config `metrics`), if configured. */
  #metrics: MasterMetrics | undefined;
  #resumeWaiter: (() => void) | undefined;
  /** While a new master waits for the old one's ticket keys (#inheritTicketKeys): takes them, or undefined (the old master is gone). */
  #ticketKeysArrived: ((keys: Readonly<Record<string, string>> | undefined) => void) | undefined;
  /** A pending state-file write (#persistSoon). */
  #persistTimer: TimerHandle | undefined;
  /** After WINCH: drains the old workers the new master did not take over in time. */
  #winchFallback: TimerHandle | undefined;
  readonly #signalHandlers = new Map<NodeJS.Signals, () => void>();
  /**
   * Holds the event loop open until the master has exited. A master in
   * standby with no workers has nothing else that keeps it alive, and Node
   * would end it silently (code 13, unsettled top-level await in the CLI).
   */
  #keepAlive: (() => void) | undefined;
  /** The process 'exit' and crash hooks, removed once the master has exited. */
  readonly #processHooks = new Map<'exit' | 'uncaughtException' | 'unhandledRejection', (arg: unknown) => void>();
  readonly #exited: Promise<number>;
  #exit!: (code: number) => void;
  #exitCode = 0;

  private constructor(
    options: MasterOptions,
    config: Config,
    logger: SupervisorLog,
    listeners: HeldListeners,
    parentPid: number | undefined,
    metrics: MasterMetrics | undefined,
  ) {
    super();
    phaseBegins(this);
    this.#metrics = metrics;
    this.#options = options;
    this.#platform = options.platform ?? realPlatform;
    this.#config = config;
    this.#logger = logger;
    this.#listeners = listeners;
    this.#parentPid = parentPid;
    this.#notify = new SdNotify(options.env ?? process.env, this.#platform.native);
    ({ counters: this.#counters, byProtocol: this.#byProtocol } = readCounters(config.stateFile));
    // With a log file, the workers' output goes there too (one file, reopened on USR1).
    const output = config.log.file
      ? (line: string, stream: 'stdout' | 'stderr', w: { slot: number; pid: number }) =>
          this.#log.info({ event: 'worker-output', slot: w.slot, workerPid: w.pid, stream }, line)
      : undefined;
    this.#pool = new WorkerPool(config, listeners.all, slotDirPath(config.runDir, config.name, process.pid), output, this.#platform);
    this.#exited = new Promise((resolve) => (this.#exit = resolve));
    this.#phases.on('phase', (to, from) => {
      publishPhase(this, 'master', undefined, from, to);
      this.#metrics?.onPhase(to);
      this.#log.info({ event: 'master-phase', phase: to, from }, `master phase ${from} -> ${to}`);
      this.emit('phase', to, from);
    });
    this.#pool.on('observe', (e) => this.#metrics?.observe(e));
    // Counters outlive the master: a drain's counts are persisted (the drains of a reload's
    // workers end together: one write for them, see #persistSoon), or, while a newer master runs
    // (it owns the state file), handed to it.
    this.#pool.on('drained', (r) => {
      if (this.#child) this.#sendChild({ baton: 'old-master', type: 'drained', ...r });
      else this.#persistSoon();
    });
    this.#pool.on('log', (level, message, details) => {
      this.#log[level](details, message);
      if (level === 'error') this.#lastError = message;
    });
  }

  get #log() {
    return this.#logger.log;
  }

  /**
   * Starts a master: reads the config, takes inherited listeners (from an old
   * master or systemd) or binds them, opens the control socket and starts the
   * workers. Resolves once the master runs (its workers may still be starting;
   * see {@link Master.exited}). Throws ERR_BATON_CONFIG_INVALID for a bad
   * config and ERR_BATON_MASTER_RUNNING when a master already serves this name.
   */
  static async start(options: MasterOptions): Promise<Master> {
    const env = options.env ?? process.env;
    const config = loadConfig(options.configFile, options.overrides);
    ensurePrivateDir(config.runDir);
    const parentRaw = env[PARENT_MASTER_ENV];
    delete env[PARENT_MASTER_ENV];
    const parentPid = parentRaw && (options.platform ?? realPlatform).process.hasChannel ? Number(parentRaw) : undefined;
    if (parentPid === undefined) await refuseIfRunning(config);
    const inherited = takeListenFds(env);
    const metricsFd = takeMetricsFd(inherited);
    const logger = createSupervisorLog(
      config.log.file,
      config.log.level,
      { name: config.name, pid: process.pid, role: 'master' },
      config.log.format,
    );
    const adopted = parseNames(env[ADOPTED_LISTENERS_ENV]);
    delete env[ADOPTED_LISTENERS_ENV];
    const listeners = await HeldListeners.open(config.listeners, inherited, parentPid === undefined && inherited.length > 0, { adopted });
    if (!config.metrics && metricsFd !== undefined) closeQuietly(metricsFd);
    // The endpoint asks the master for its status at scrape time (the first scrape is accepted after the master exists).
    const self: { master?: Master } = {};
    const metricsAt = config.metrics;
    const metrics = metricsAt
      ? // Loaded only when configured: prom-client costs a master (and every CLI command) ~80 ms to load.
        await (
          await import('../observe/master-metrics.js')
        ).MasterMetrics.open(
          metricsFd,
          () => bindListener('metrics', metricsAt),
          config.name,
          (ms) => self.master!.status(ms),
        )
      : undefined;
    const master = new Master(options, config, logger, listeners, parentPid, metrics);
    self.master = master;
    await master.#begin();
    return master;
  }

  get phase(): MasterPhase {
    return this.#phases.phase;
  }

  get phaseHistory(): readonly MasterPhase[] {
    return this.#phases.history;
  }

  /** Resolves with the exit code once the master has stopped (phase `exited`). */
  exited(): Promise<number> {
    return this.#exited;
  }

  async #begin(): Promise<void> {
    const c = this.#config;
    this.#removeDeadMastersFiles();
    this.#control = await ControlServer.listen(controlSocketPath(c.runDir, c.name, this.pid), () => this.status());
    this.#installSignals();
    if (this.#parentPid !== undefined) this.#linkToParent();
    this.#log.info(
      {
        event: 'master-starting',
        listeners: this.#listeners.status(),
        workers: c.workers,
        app: c.app,
        config: c.source,
        parentPid: this.#parentPid,
      },
      `master starting: ${c.workers} worker(s) of ${c.app}`,
    );
    this.#pool.on('change', () => this.#onPoolChange());
    this.#pool.on('listener', (name, server) => {
      if (!this.#listeners.adopt(name, server)) return;
      this.#pool.setListeners(this.#listeners.all);
      this.#log.info(
        { event: 'listener-adopted', listeners: this.#listeners.status() },
        `listener ${name}, bound by a worker, is now held by the master and shared with every worker`,
      );
    });
    // A new master of a binary upgrade takes the old master's ticket keys before any worker starts.
    if (this.#parentPid !== undefined && this.#config.tlsTicketKeys) await this.#inheritTicketKeys();
    // A TERM or QUIT while it waited has stopped the pool already.
    if (this.phase !== 'starting') return;
    this.#pool.start();
  }

  /**
   * Binary upgrade, before the first worker starts: asks the old master for its TLS
   * session-ticket keys over the IPC channel only the two masters share, and makes them this
   * master's, so a client holding a ticket of an old worker resumes its session on a new one
   * (and on the masters after this one, which get them the same way). An old master that opted
   * out answers with none; one that is gone, or does not answer within
   * {@link TICKET_KEYS_WAIT_MS} (an older baton), leaves this master with keys of its own. The
   * keys are never logged: only the listener names are.
   */
  async #inheritTicketKeys(): Promise<void> {
    const clock = this.#platform.clock;
    const parent = this.#parentPid;
    const keys = await new Promise<Readonly<Record<string, string>> | undefined>((resolve) => {
      const timer = clock.setTimeout(() => this.#ticketKeysArrived?.(undefined), TICKET_KEYS_WAIT_MS, true);
      this.#ticketKeysArrived = (k) => {
        clock.clearTimeout(timer);
        this.#ticketKeysArrived = undefined;
        resolve(k);
      };
      this.#sendParent({ baton: 'new-master', type: 'ticket-keys-wanted' });
    });
    if (keys === undefined) {
      this.#log.warn(
        { event: 'ticket-keys-not-inherited', parentPid: parent },
        `the old master (pid ${parent}) gave no TLS session-ticket keys; this master's workers use keys of their own (a client reconnecting to them makes a full handshake)`,
      );
      return;
    }
    const names = Object.keys(keys);
    this.#pool.inheritTicketKeys(keys);
    this.#log.info(
      { event: 'ticket-keys-inherited', parentPid: parent, listeners: names },
      names.length > 0
        ? `the old master's TLS session-ticket keys for ${names.join(', ')} are this master's: sessions resume across the upgrade`
        : 'the old master has no TLS session-ticket keys to give (its tlsTicketKeys is false); this master makes its own',
    );
  }

  /** While starting: all workers ready → running. A new master whose workers fail gives up, so the old one takes over again. */
  #onPoolChange(): void {
    if (this.phase !== 'starting') return;
    if (this.#pool.allReady) {
      failpoint('master.workers-serving');
      if (this.#parentPid !== undefined) {
        this.#counters.upgrades++;
        this.#upgradeEnded('done');
      }
      this.#phases.transition('running');
      this.#fileOp('pid file', this.#config.pidFile, () => writePidFile(this.#config.pidFile));
      this.#persist();
      this.#notifySystemd({ READY: 1, MAINPID: this.pid, STATUS: `serving with ${this.#config.workers} worker(s)` });
      this.#sendParent({ baton: 'new-master', type: 'ready', pid: this.pid });
      this.#log.info({ event: 'master-ready', pidFile: this.#config.pidFile }, `master ready: ${this.#config.workers} worker(s) serving`);
    } else if (this.#pool.unconfiguredListeners.length > 0) {
      // Reported by the pool with what to do; a start that cannot work fails instead of looping.
      this.#exitCode = 1;
      void this.#shutdown(this.#config.timeouts.fastMs, `listener(s) ${this.#pool.unconfiguredListeners.join(', ')} not configured`);
    } else if (this.#parentPid !== undefined && this.#pool.crashLooping.length > 0) {
      this.#error('upgrade-failed', 'ERR_BATON_UPGRADE_FAILED', 'new master: workers keep failing; exiting so the old master serves on');
      this.#exitCode = 1;
      void this.#shutdown(this.#config.timeouts.fastMs, 'its workers keep failing while the old master serves');
    }
  }

  #installSignals(): void {
    const on = (signal: NodeJS.Signals, fn: () => void) => {
      this.#signalHandlers.set(signal, fn);
      this.#platform.process.on(signal, fn);
    };
    on('SIGTERM', () => this.#fastStop('SIGTERM'));
    on('SIGINT', () => this.#fastStop('SIGINT'));
    on('SIGQUIT', () => {
      this.#log.info('QUIT: graceful exit');
      void this.#shutdown(this.#config.timeouts.drainMs, 'QUIT');
    });
    on('SIGHUP', () => void this.reload());
    on('SIGUSR1', () => {
      this.#logger.reopen();
      this.#log.info({ event: 'log-reopened' }, 'USR1: log file reopened');
    });
    on('SIGUSR2', () => this.#upgrade());
    on('SIGWINCH', () => this.#winch());
    this.#keepAlive = this.#platform.process.keepAlive();
    // No exit without a record of its reason: a bug in the master is logged, then the master stops its workers.
    const hook = (event: 'exit' | 'uncaughtException' | 'unhandledRejection', fn: (arg: unknown) => void) => {
      this.#processHooks.set(event, fn);
      this.#platform.process.on(event, fn);
    };
    const crashed = (err: unknown) => {
      const e = asError(err);
      this.#error('master-crashed', (e as BatonError).code ?? (e as NodeJS.ErrnoException).code, `master crashed: ${e.stack ?? e.message}`);
      this.#exitCode = 1;
      if (this.phase === 'stopping') {
        // The crash is in the shutdown itself: let the process end (the 'exit' hook logs it).
        this.#keepAlive?.();
        this.#platform.process.setExitCode(1);
      } else void this.#shutdown(this.#config.timeouts.fastMs, `crashed: ${e.message}`);
    };
    hook('uncaughtException', crashed);
    hook('unhandledRejection', crashed);
    hook('exit', (code) => {
      if (this.phase === 'exited') return;
      this.#log.fatal(
        { event: 'master-exit-unexpected', exitCode: code, phase: this.phase },
        `master exiting in phase ${this.phase} with code ${String(code)} without a shutdown`,
      );
      this.#logger.flush();
    });
  }

  /**
   * HUP: re-reads the config and the app's code. A config that fails
   * validation is refused (logged with its file, key and line) and the
   * running workers are untouched. Otherwise every slot gets a new worker,
   * ready before the old one stops accepting. In `standby` it restarts the
   * workers (rollback to this master).
   */
  async reload(): Promise<void> {
    const request = ++this.#reloadRequests;
    const p = this.phase;
    if (p === 'standby') {
      await this.#resume();
      return this.#reloaded(request, 'resumed', 'rollback to this master: its workers serve again');
    }
    if (p !== 'running' && p !== 'superseded' && p !== 'reloading') {
      this.#log.warn(`HUP ignored in phase ${p}`);
      return this.#reloaded(request, 'refused', `reload refused: the master is ${p}`);
    }
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    return this.#runReload();
  }

  #runReload(): Promise<void> {
    this.#reloading = this.#reloadOnce().finally(() => {
      this.#reloading = undefined;
      if (this.#reloadAgain) {
        this.#reloadAgain = false;
        // The requests that came during that reload get one more.
        if (this.phase === 'running' || this.phase === 'superseded') void this.#runReload();
        else this.#reloaded(this.#reloadRequests, 'refused', `reload refused: the master is ${this.phase}`);
      }
    });
    return this.#reloading;
  }

  async #reloadOnce(): Promise<void> {
    // Every request received so far is covered by this reload (it reads the config from now on).
    const request = this.#reloadRequests;
    let next: Config;
    try {
      next = loadConfig(this.#options.configFile, this.#options.overrides);
    } catch (err) {
      return this.#refuseReload(request, err);
    }
    const crowded = this.#pool.crowded(next.workers, next.maxGenerations);
    if (crowded.length > 0) {
      const slots = crowded.map(
        ({ slot, alive }) => `slot ${slot}: ${alive.map((w, i) => `worker pid ${w.pid} (${i === 0 ? 'serving' : 'draining'})`).join(', ')}`,
      );
      return this.#refuseReload(
        request,
        new BatonError(
          'ERR_BATON_TOO_MANY_GENERATIONS',
          `a new worker would make more than maxGenerations (${next.maxGenerations}) generations alive — ${slots.join('; ')}; reload again once a draining worker has exited, or raise maxGenerations`,
        ),
      );
    }
    if (JSON.stringify(next.listeners) !== JSON.stringify(this.#config.listeners)) {
      // Unchanged listeners keep their sockets; new ones are bound before any worker changes.
      try {
        const listeners = await this.#listeners.reopen(next.listeners);
        this.#listeners.close();
        this.#listeners = listeners;
        this.#pool.setListeners(listeners.all);
        this.#log.info({ event: 'listeners-changed', listeners: listeners.status() }, 'reload: listeners changed');
      } catch (err) {
        return this.#refuseReload(request, err);
      }
    }
    this.#config = { ...next, runDir: this.#config.runDir, pidFile: this.#config.pidFile };
    const own = this.phase === 'running';
    if (own) this.#phases.transition('reloading');
    this.#notifySystemd({ RELOADING: 1, MONOTONIC_USEC: (process.hrtime.bigint() / 1000n).toString() });
    this.#log.info(`reload: starting ${next.workers} new worker(s)`);
    failpoint('master.reload-started');
    const { failed } = await this.#pool.reload(this.#config);
    this.#counters.reloads++;
    if (failed.length > 0) {
      const message = `reload: new worker(s) ${failed.join(', ')} failed; the old ones serve on there`;
      this.#error('reload-failed', 'ERR_BATON_RELOAD_FAILED', message, { failed });
      this.#reloaded(request, 'failed', message);
    } else {
      const message = 'reload done: every worker runs the new code';
      this.#log.info({ event: 'reload-done' }, message);
      this.#reloaded(request, 'done', message);
    }
    if (own && (this.phase as MasterPhase) === 'reloading') this.#phases.transition('running');
    this.#persist();
    this.#notifySystemd({ READY: 1, STATUS: failed.length ? `reload partly failed (${failed.join(', ')})` : 'serving, reloaded' });
  }

  /** USR2: starts a new master from the code on disk with the listeners as inherited fds. */
  #upgrade(): void {
    const refuse = (why: string) => this.#error('usr2-refused', 'ERR_BATON_UPGRADE_IN_PROGRESS', `USR2 refused: ${why}`);
    if (this.#child) {
      return refuse(`an upgrade is already under way (new master pid ${this.#child.pid}); finish it (WINCH, QUIT) or roll it back first`);
    }
    // One old master at a time: it keeps the fds and workers of its generation until they drained.
    if (this.#parentPid !== undefined) {
      return refuse(
        this.#parentStopping
          ? `the old master (pid ${this.#parentPid}) still runs: it is stopping and exits once its workers have drained; USR2 again after that (one old master at a time)`
          : `this master is itself the new one while the old master (pid ${this.#parentPid}) still runs; retire the old master (QUIT) first`,
      );
    }
    if (this.phase !== 'running') return refuse(`this master is ${this.phase}; an upgrade needs phase 'running'`);
    // The new master starts from the state file: counts still to be written go first.
    this.#flushPersist();
    const pidFile = this.#config.pidFile;
    if (readPidFile(pidFile) === this.pid) this.#fileOp('pid file', pidFile, () => renameDurable(pidFile, `${pidFile}.oldbin`));
    let child: ChildProcess;
    try {
      child = this.#platform.spawn(
        [
          ...this.#listeners.all.map((l) => ({ name: l.name, fd: l.fd })),
          ...(this.#metrics ? [{ name: METRICS_FD_NAME, fd: this.#metrics.fd }] : []),
        ],
        { command: process.execPath, args: [...process.execArgv, ...process.argv.slice(1)] },
        {
          ipc: true,
          env: { [PARENT_MASTER_ENV]: String(this.pid), [ADOPTED_LISTENERS_ENV]: JSON.stringify(this.#listeners.adoptedNames) },
        },
      );
    } catch (err) {
      this.#restorePidFile();
      this.#upgradeEnded('failed');
      return this.#error('upgrade-failed', 'ERR_BATON_UPGRADE_FAILED', `USR2: could not start a new master: ${asError(err).message}`);
    }
    this.#child = child;
    this.#phases.transition('upgrading');
    failpoint('master.new-master-spawned');
    this.#log.info(
      { event: 'upgrade-started', childPid: child.pid },
      `USR2: new master pid ${child.pid} starting; the pid file is now ${pidFile}.oldbin`,
    );
    child.on('error', () => undefined);
    child.on('message', (raw: unknown) => {
      const m = decodeMasterLinkMessage(raw);
      if (m?.baton !== 'new-master') return;
      if (m.type === 'ready' && this.phase === 'upgrading') {
        failpoint('master.superseded');
        this.#phases.transition('superseded');
        this.#log.info(
          { event: 'superseded', childPid: child.pid },
          `new master pid ${child.pid} is ready; WINCH stops this master's workers, QUIT retires it`,
        );
      } else if (m.type === 'resume') {
        void this.#resume().then(() => this.#sendChild({ baton: 'old-master', type: 'resumed' }));
      } else if (m.type === 'ticket-keys-wanted') {
        // Secrets, on the channel only the two masters share; none when this master opted out.
        const keys = this.#config.tlsTicketKeys ? this.#pool.ticketKeysFor(this.#listeners.all) : {};
        this.#sendChild({ baton: 'old-master', type: 'ticket-keys', keys });
      }
    });
    child.once('exit', (code, signal) => this.#onChildExit(child, code, signal));
  }

  #onChildExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const p = this.phase;
    this.#removeMasterFiles(child.pid);
    if (p === 'stopping' || p === 'exited') return;
    this.#restorePidFile();
    if (p === 'upgrading') {
      this.#error(
        'upgrade-failed',
        'ERR_BATON_UPGRADE_FAILED',
        `new master pid ${child.pid} exited with ${how} before it was ready; this master serves on`,
      );
      this.#upgradeEnded('failed');
      this.#phases.transition('running');
    } else {
      this.#log.warn(
        { event: 'child-master-exited', childPid: child.pid },
        `new master pid ${child.pid} exited with ${how}; this master (pid ${this.pid}) is the current one again`,
      );
      // Whatever WINCH left to do is moot: this master serves again.
      this.#upgradeEnded('failed');
      this.#clearWinchFallback();
      if (p === 'standby') this.#pool.start();
      this.#phases.transition('running');
    }
    this.#persist();
    this.#notifySystemd({ MAINPID: this.pid, READY: 1, STATUS: 'serving (the new master is gone)' });
  }

  /**
   * WINCH: a superseded master retires its workers and stays as a fallback.
   * Their live connections move to the new master's workers (each new worker
   * takes an old one over through its upgrade socket, as on reload); a worker
   * not taken over within `timeouts.readyMs` drains by itself.
   */
  #winch(): void {
    if (this.phase !== 'superseded') {
      this.#log.warn(
        { event: 'winch-refused' },
        `WINCH ignored in phase ${this.phase}: only a master superseded by a newer one may stop its workers`,
      );
      return;
    }
    failpoint('master.winch');
    this.#phases.transition('standby');
    const { drainMs, readyMs } = this.#config.timeouts;
    const retiring = this.#pool.retireAll();
    if (retiring.length > 0 && this.#child?.connected) {
      this.#log.info(
        { event: 'winch', workers: retiring.length },
        "WINCH: the new master's workers take this master's workers over, with their connections",
      );
      this.#sendChild({ baton: 'old-master', type: 'absorb', workers: retiring });
      // Only the retired workers: workers started since (the new master died, a rollback) are not its business.
      this.#winchFallback = this.#platform.clock.setTimeout(
        () => {
          this.#winchFallback = undefined;
          this.#pool.stopRetired(drainMs);
        },
        readyMs,
        true,
      );
    } else {
      this.#log.info(
        { event: 'winch', workers: retiring.length },
        'WINCH: stopping the workers gracefully; this master stays as a fallback',
      );
      void this.#pool.stopAll(drainMs);
    }
  }

  #clearWinchFallback(): void {
    this.#platform.clock.clearTimeout(this.#winchFallback);
    this.#winchFallback = undefined;
  }

  /** Rollback to this master: restart its workers (if stopped) and wait until they serve. */
  async #resume(): Promise<void> {
    this.#clearWinchFallback();
    if (this.phase === 'standby') {
      this.#log.info('restarting the workers (rollback to this master)');
      this.#phases.transition('superseded');
      this.#pool.start();
    }
    if (this.#pool.allReady) return;
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.#pool.allReady || this.phase === 'stopping' || this.phase === 'exited') {
          this.#pool.off('change', check);
          resolve();
        }
      };
      this.#pool.on('change', check);
    });
  }

  /**
   * TERM/INT. A new master whose old master still runs rolls back: the old
   * master restarts its workers, and only then does this one retire — no
   * request is lost to the rollback. Otherwise a fast stop: requests in flight
   * get `timeouts.fastMs` to finish.
   */
  #fastStop(signal: NodeJS.Signals): void {
    if (this.phase === 'stopping' || this.phase === 'exited') return;
    if (this.#parentPid !== undefined && this.#platform.process.connected) {
      this.#log.info(`${signal}: rolling back to the old master (pid ${this.#parentPid}): waiting for its workers`);
      const clock = this.#platform.clock;
      const timer = clock.setTimeout(() => {
        this.#log.warn('the old master did not resume in time; stopping anyway');
        this.#resumeWaiter?.();
      }, this.#config.timeouts.readyMs);
      this.#resumeWaiter = () => {
        clock.clearTimeout(timer);
        this.#resumeWaiter = undefined;
        void this.#shutdown(this.#config.timeouts.drainMs, `${signal} (rolled back to the old master)`);
      };
      this.#sendParent({ baton: 'new-master', type: 'resume' });
      return;
    }
    this.#log.info(`${signal}: fast exit`);
    void this.#shutdown(this.#config.timeouts.fastMs, signal);
  }

  #linkToParent(): void {
    const link = this.#platform.process;
    link.on('message', (raw: unknown) => {
      const m = decodeMasterLinkMessage(raw);
      if (m?.baton !== 'old-master') return;
      if (m.type === 'resumed') this.#resumeWaiter?.();
      else if (m.type === 'ticket-keys') this.#ticketKeysArrived?.(m.keys);
      else if (m.type === 'stopping') {
        this.#parentStopping = true;
        this.#log.info(
          { event: 'old-master-stopping', parentPid: this.#parentPid },
          `the old master (pid ${this.#parentPid}) is stopping; it exits once its workers have drained`,
        );
      } else if (m.type === 'drained') {
        this.#counters.migrated += m.migrated;
        this.#counters.drained += m.drained;
        this.#counters.forced += m.forced;
        addByProtocol(this.#byProtocol, m.byProtocol);
        this.#persistSoon();
      } else if (m.type === 'absorb') {
        failpoint('master.absorbing');
        const n = this.#pool.absorb(m.workers);
        this.#log.info({ event: 'absorbing', workers: n }, `taking over ${n} retiring worker(s) of the old master and their connections`);
      }
    });
    const parentGone = () => {
      if (this.#parentPid === undefined) return;
      const parent = this.#parentPid;
      this.#parentPid = undefined;
      // Killed rather than retired: nobody else removes what it left.
      if (parent !== undefined && !alive(parent)) this.#removeMasterFiles(parent);
      this.#log.info(
        { event: 'old-master-gone', parentPid: parent },
        `the old master (pid ${parent}) is gone; this master is the only one`,
      );
      // The pid file this master could not write (a full disk) is tried again now that it alone runs.
      const pidFile = this.#config.pidFile;
      if (this.phase === 'running' && readPidFile(pidFile) !== this.pid) this.#fileOp('pid file', pidFile, () => writePidFile(pidFile));
      this.#resumeWaiter?.();
      this.#ticketKeysArrived?.(undefined);
      if (this.phase === 'running') this.#notifySystemd({ MAINPID: this.pid, STATUS: 'serving' });
    };
    link.on('disconnect', parentGone);
    // This runs after start-up's awaits: an old master killed meanwhile (right after USR2)
    // disconnected before anyone listened, and would otherwise count as running for ever.
    if (!link.connected) parentGone();
    link.unrefChannel();
  }

  /** Stops the workers (draining for at most `drainMs`), closes everything and resolves {@link Master.exited}; `reason` is logged. */
  async #shutdown(drainMs: number, reason: string): Promise<void> {
    if (this.phase === 'stopping' || this.phase === 'exited') return;
    this.#phases.transition('stopping');
    this.#notifySystemd({ STOPPING: 1 });
    // A new master refuses USR2 while this one runs; it can say why (see #upgrade).
    this.#sendChild({ baton: 'old-master', type: 'stopping' });
    await this.#pool.stopAll(drainMs);
    this.#flushPersist();
    // A new master this one started lives on without it.
    if (this.#child) {
      this.#child.disconnect?.();
      this.#child.unref();
      this.#child = undefined;
    }
    if (this.#parentPid !== undefined) this.#platform.process.disconnect();
    this.#listeners.close();
    this.#metrics?.close();
    this.#control?.close();
    this.#pool.removeDir();
    for (const file of [this.#config.pidFile, `${this.#config.pidFile}.oldbin`]) removeOwnPidFile(file);
    for (const [signal, fn] of this.#signalHandlers) this.#platform.process.off(signal, fn);
    this.#log.info(
      { event: 'master-exited', reason, exitCode: this.#exitCode, counters: this.#allCounters() },
      `master exited (${reason}), code ${this.#exitCode}`,
    );
    this.#logger.flush();
    this.#phases.transition('exited');
    this.#keepAlive?.();
    for (const [event, fn] of this.#processHooks) this.#platform.process.off(event, fn);
    this.#exit(this.#exitCode);
  }

  /** This master's status, with every worker's connections (each worker gets `connectionsTimeoutMs` to answer, default 500). */
  async status(connectionsTimeoutMs?: number): Promise<MasterStatus> {
    const workers = await this.#pool.status(connectionsTimeoutMs);
    return {
      pid: this.pid,
      name: this.#config.name,
      phase: this.phase,
      role: this.#child ? 'old' : this.#parentPid !== undefined ? 'new' : 'current',
      startedAt: this.startedAt.toISOString(),
      uptimeMs: Date.now() - this.startedAt.getTime(),
      config: this.#config.source,
      pidFile: this.#config.pidFile,
      parentPid: this.#parentPid,
      childPid: this.#child?.pid,
      listeners: this.#listeners.status(),
      workers,
      workersWanted: this.#config.workers,
      crashLoop: this.#pool.crashLooping,
      counters: this.#allCounters(),
      requests: this.#pool.requestsByGeneration(),
      byProtocol: this.#allByProtocol(),
      lastError: this.#lastError,
      reload: { requests: this.#reloadRequests, last: this.#lastReload, lastSuccessAt: this.#lastReloadSuccessAt },
      upgrade: this.#lastUpgrade,
    };
  }

  #allCounters(): MasterCounters {
    const p = this.#pool.counters;
    const c = this.#counters;
    return {
      ...c,
      restarts: c.restarts + p.restarts,
      migrated: c.migrated + p.migrated,
      drained: c.drained + p.drained,
      forced: c.forced + p.forced,
    };
  }

  #allByProtocol(): DrainByProtocol {
    const all: DrainByProtocol = {};
    addByProtocol(all, this.#byProtocol);
    addByProtocol(all, this.#pool.byProtocol);
    return all;
  }

  #restorePidFile(): void {
    const file = this.#config.pidFile;
    const old = `${file}.oldbin`;
    if (readPidFile(old) === this.pid) this.#fileOp('pid file', old, () => renameDurable(old, file));
    else this.#fileOp('pid file', file, () => writePidFile(file));
  }

  /**
   * Runs a write of a pid or state file. Those files are best-effort: a
   * failure (a full disk, a read-only run dir) is logged as
   * `file-write-failed` naming the file and the errno, and serving goes on.
   */
  #fileOp(what: string, file: string, op: () => void): boolean {
    try {
      op();
      return true;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.#log.warn(
        { event: 'file-write-failed', code: e.code, file, syscall: e.syscall },
        `cannot write the ${what} ${file}: ${e.message}; serving goes on without it`,
      );
      return false;
    }
  }

  /** Removes the control socket and worker slot directory of master `pid`, which is gone (never this master's own). */
  #removeMasterFiles(pid: number | undefined): void {
    if (pid === undefined || pid === this.pid) return;
    const { runDir, name } = this.#config;
    for (const file of [controlSocketPath(runDir, name, pid), slotDirPath(runDir, name, pid)]) {
      try {
        fs.rmSync(file, { recursive: true, force: true });
      } catch (err) {
        this.#log.warn(
          { event: 'cleanup-failed', file, code: (err as NodeJS.ErrnoException).code },
          `cannot remove ${file}: ${asError(err).message}`,
        );
      }
    }
  }

  /** At start: removes what masters of this name that were killed (not stopped) left in the run dir. */
  #removeDeadMastersFiles(): void {
    const { runDir, name } = this.#config;
    let entries: string[];
    try {
      entries = fs.readdirSync(runDir);
    } catch {
      return;
    }
    const prefix = `${name}-`;
    const dead = new Set<number>();
    for (const entry of entries) {
      const m = entry.startsWith(prefix) ? /^(?:master-(\d+)\.sock|m(\d+))$/.exec(entry.slice(prefix.length)) : null;
      const pid = Number(m?.[1] ?? m?.[2]);
      if (Number.isInteger(pid) && pid > 0 && pid !== this.pid && !alive(pid)) dead.add(pid);
    }
    for (const pid of dead) {
      this.#removeMasterFiles(pid);
      this.#log.info(
        { event: 'stale-files-removed', deadPid: pid },
        `removed the control socket and worker slots of dead master pid ${pid}`,
      );
    }
  }

  /**
   * Writes the state file within {@link PERSIST_COALESCE_MS}: the drains that end together (a
   * reload's workers, an old master's retiring ones) cost one write (write, fsync, rename, fsync),
   * not one each. Flushed before a new master is spawned (it reads the file) and at shutdown.
   */
  #persistSoon(): void {
    this.#persistTimer ??= this.#platform.clock.setTimeout(() => this.#persist(), PERSIST_COALESCE_MS);
  }

  /** Writes now what {@link Master.#persistSoon} would write later, if anything. */
  #flushPersist(): void {
    if (this.#persistTimer !== undefined) this.#persist();
  }

  /** Writes the state file (only the master that owns the pid file does, or the newest one when there is none). */
  #persist(): void {
    this.#platform.clock.clearTimeout(this.#persistTimer);
    this.#persistTimer = undefined;
    // Without a pid file (it could not be written: a full disk) the newest master writes it.
    const owner = readPidFile(this.#config.pidFile);
    if (owner !== this.pid && (owner !== undefined || this.#child !== undefined)) return;
    const state: PersistedState = {
      version: 1,
      name: this.#config.name,
      masterPid: this.pid,
      updatedAt: new Date().toISOString(),
      config: this.#config,
      counters: this.#allCounters(),
      byProtocol: this.#allByProtocol(),
    };
    this.#fileOp('state file', this.#config.stateFile, () =>
      writeFileAtomic(this.#config.stateFile, `${JSON.stringify(state, null, 2)}\n`, 0o600),
    );
  }

  /** Logs an error as event `event` with its code (a BatonError code, or a syscall code), and keeps it as the status's last error. */
  #error(event: string, code: string | undefined, message: string, details: Record<string, unknown> = {}): void {
    this.#lastError = message;
    this.#log.error({ event, code, ...details }, message);
  }

  /** A reload that cannot happen (bad config, a listener that cannot be bound): nothing changes. */
  #refuseReload(request: number, err: unknown): void {
    const message = `reload refused: ${asError(err).message}; the running workers serve on`;
    this.#error('reload-refused', (err as BatonError).code ?? (err as NodeJS.ErrnoException).code, message);
    this.#reloaded(request, 'refused', message);
    this.#notifySystemd({ STATUS: message });
  }

  /** Records how the reload covering requests up to `request` ended (status `reload.last`). */
  #reloaded(request: number, result: ReloadOutcome['result'], message: string): void {
    const at = new Date().toISOString();
    this.#lastReload = { request, result, message, at };
    if (result === 'done' || result === 'resumed') this.#lastReloadSuccessAt = at;
    else if (result === 'failed') this.#counters.reloadsFailed++;
    else this.#counters.reloadsRefused++;
  }

  /** Records how a binary upgrade ended, as this master saw it (status `upgrade`). */
  #upgradeEnded(result: 'done' | 'failed'): void {
    const at = new Date().toISOString();
    if (result === 'failed') this.#counters.upgradesFailed++;
    this.#lastUpgrade = { last: { result, at }, lastSuccessAt: result === 'done' ? at : this.#lastUpgrade.lastSuccessAt };
  }

  #notifySystemd(fields: Record<string, string | number>): void {
    try {
      this.#notify.send(fields);
    } catch (err) {
      this.#log.warn(`sd_notify failed: ${asError(err).message}`);
    }
  }

  #sendParent(m: MasterLinkMessage): void {
    if (this.#parentPid !== undefined) this.#platform.process.send(m);
  }

  #sendChild(m: MasterLinkMessage): void {
    if (this.#child?.connected) this.#child.send(m, undefined, {}, () => undefined);
  }
}

/** How long a new master waits for the old one's ticket keys before its workers start with keys of their own. */
const TICKET_KEYS_WAIT_MS = 5_000;

/** How long the state-file write after a drain waits for other drains ending at the same time. */
const PERSIST_COALESCE_MS = 200;

/** The private directory of master `pid`'s worker slots (their upgrade sockets). */
function slotDirPath(runDir: string, name: string, pid: number): string {
  return path.join(runDir, `${name}-m${pid}`);
}

/** Counters persisted by the previous master, or zeros. */
function readCounters(file: string): { counters: MasterCounters; byProtocol: DrainByProtocol } {
  const zero: MasterCounters = {
    reloads: 0,
    reloadsFailed: 0,
    reloadsRefused: 0,
    upgrades: 0,
    upgradesFailed: 0,
    restarts: 0,
    migrated: 0,
    drained: 0,
    forced: 0,
  };
  try {
    const names = Object.keys(zero) as (keyof MasterCounters)[];
    const json = fs.readFileSync(file, 'utf8');
    return { counters: { ...zero, ...decodeStateFileCounters(json, names) }, byProtocol: decodeStateFileByProtocol(json) };
  } catch {
    return { counters: zero, byProtocol: {} }; // no file (the first master), or unreadable
  }
}

/** Throws ERR_BATON_MASTER_RUNNING when the pid file names a master that answers on its control socket. */
async function refuseIfRunning(config: Config): Promise<void> {
  const pid = readPidFile(config.pidFile);
  if (pid === undefined || pid === process.pid) return;
  try {
    await controlRequest(controlSocketPath(config.runDir, config.name, pid), { cmd: 'status' }, 2_000);
  } catch {
    return; // stale pid file
  }
  throw new BatonError(
    'ERR_BATON_MASTER_RUNNING',
    `a master (pid ${pid}) already runs '${config.name}' (pid file ${config.pidFile}); use baton reload or baton upgrade`,
  );
}
