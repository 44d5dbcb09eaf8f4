/**
 * The upgrade paths a fault case drives, each over real processes: the
 * library fixture upgraded by takeover (a new process) or exec (SIGUSR2),
 * `baton run` (zero-code, SIGUSR2 to it), and `baton start` reloaded (HUP),
 * binary-upgraded (USR2, then QUIT to the old master) or upgraded in one step
 * by `baton upgrade` (USR2, health window, WINCH, QUIT). Timeouts are short
 * so that a hung process is given up on in seconds.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { alive } from '../../src/core/proc.js';
import { appFile } from '../helpers/adopt.js';
import { EventLog, fixture, spawnFixture, tempDir, type FixtureEvent } from '../helpers/server-process.js';
import { freePort } from '../helpers/socket-activate.js';
import { cli, portOf, startMaster, writeApp, writeConfig } from '../helpers/supervisor.js';

/** The paths of the matrix. */
export const Paths = ['takeover', 'exec', 'run', 'reload', 'binary', 'winch'] as const;
export type PathName = (typeof Paths)[number];

/** Short timeouts, so the suite stays fast and a hung peer is given up on quickly. */
export const Timeouts = { helloMs: 1_000, readyMs: 5_000, drainMs: 3_000, migrateMs: 2_000, killGraceMs: 500, livenessMs: 1_000 };

/** One running service under test and how to upgrade it. */
export interface Target {
  readonly path: PathName;
  /** The run / socket directory: checked for stale files. */
  readonly dir: string;
  /** BATON_FAULTS of every process of the service. */
  readonly faults: string;
  readonly log: EventLog;
  /** The TCP port clients use. */
  port: number;
  /** Processes the harness spawned: the service is their process tree. */
  readonly roots: number[];
  /** Starts the service; resolves once it serves. */
  start(env?: NodeJS.ProcessEnv): Promise<void>;
  /**
   * Starts one upgrade; resolves when the path's own driver is done (a
   * takeover: at once; `baton upgrade`: when the command exits). The harness
   * judges the outcome from the outside.
   */
  upgrade(): Promise<void>;
  /**
   * Connections migrated into `pid`: those it reported adopting, and those
   * any other process reported handing over (acknowledged) since event index
   * `since` — a successor killed right after its acknowledgement never
   * reports them. Undefined if this path does not report migrations.
   */
  adoptedBy(pid: number, since: number): number | undefined;
}

/** Base: directories, event log, spawned roots. */
abstract class BaseTarget {
  readonly dir = tempDir('baton-fault-run-');
  readonly faults = tempDir('baton-fault-points-');
  readonly log = new EventLog();
  readonly roots: number[] = [];
  port = 0;
  env: NodeJS.ProcessEnv = {};

  adoptedBy(pid: number, since: number): number | undefined {
    const count = (e: FixtureEvent) => (e.args as { adopted?: number }[] | undefined)?.[0]?.adopted ?? 0;
    const events = this.log.events.slice(since);
    const adopted = events.filter((e) => e.event === 'connections-in' && e.pid === pid).reduce((n, e) => n + count(e), 0);
    const handedOver = events.filter((e) => e.event === 'connections-out' && e.pid !== pid).reduce((n, e) => n + count(e), 0);
    return adopted + handedOver;
  }

  protected spawned(child: ChildProcess): ChildProcess {
    this.roots.push(child.pid!);
    return child;
  }
}

/** The library fixture (test/fixtures/server.ts): takeover spawns a new process, exec sends SIGUSR2 to the newest. */
export class LibraryTarget extends BaseTarget implements Target {
  #newest = 0;
  #generation = 0;
  constructor(readonly path: 'takeover' | 'exec') {
    super();
  }

  #env(): NodeJS.ProcessEnv {
    return {
      BATON_SOCKET_DIR: this.dir,
      BATON_FAULTS: this.faults,
      PID_FILE: path.join(this.dir, 'fixture.pid'),
      HELLO_TIMEOUT_MS: String(Timeouts.helloMs),
      READY_TIMEOUT_MS: String(Timeouts.readyMs),
      DRAIN_TIMEOUT_MS: String(Timeouts.drainMs),
      MIGRATE_TIMEOUT_MS: String(Timeouts.migrateMs),
      LIVENESS_TIMEOUT_MS: String(Timeouts.livenessMs),
      KILL_GRACE_MS: String(Timeouts.killGraceMs),
      ...this.env,
    };
  }

  async start(env: NodeJS.ProcessEnv = {}): Promise<void> {
    // Fixed ports, as a deployment has: a successor that must bind by itself (its predecessor died
    // before sending the listeners) binds the same ones.
    this.env = { PORT: String(await freePort()), H2C_PORT: String(await freePort()), ...env };
    const first = this.spawned(spawnFixture(fixture('server'), this.#env(), this.log));
    const listening = await this.log.waitEvent('listening', first.pid, 20_000);
    await this.log.waitEvent('ready', first.pid, 20_000);
    this.port = listening.http as number;
    this.#newest = first.pid!;
    this.#generation = 1;
  }

  async upgrade(): Promise<void> {
    // The newest generation that reported ready and still runs is the one to upgrade (exec) or the
    // one taken over: a successor killed after its ready left its predecessor serving.
    const ready = this.log.events.filter((e) => e.event === 'ready' && alive(e.pid!));
    const newest = ready[ready.length - 1];
    if (newest) {
      this.#newest = newest.pid;
      this.#generation = newest.generation as number;
    }
    if (this.path === 'takeover') this.spawned(spawnFixture(fixture('server'), this.#env(), this.log));
    else {
      try {
        process.kill(this.#newest, 'SIGUSR2');
      } catch {
        // The newest generation is gone: there is nothing to upgrade, and the case says so.
      }
    }
  }
}

/** `baton run` of an unmodified Express 5 app; SIGUSR2 to `baton run` starts a takeover successor as its child. */
export class RunTarget extends BaseTarget implements Target {
  readonly path = 'run' as const;
  #wrapper: ChildProcess | undefined;

  async start(env: NodeJS.ProcessEnv = {}): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        cli,
        'run',
        '--name',
        'app',
        '--socket-dir',
        this.dir,
        '--quiet-ms',
        '50',
        '--liveness-ms',
        String(Timeouts.livenessMs),
        appFile('express5.cjs'),
      ],
      {
        env: {
          ...process.env,
          BATON_LOG: 'json',
          PORT: '0',
          BATON_FAULTS: this.faults,
          BATON_READY_TIMEOUT_MS: String(Timeouts.readyMs),
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.#wrapper = this.spawned(child);
    this.log.attach(child.stdout!);
    this.log.attach(child.stderr!);
    const ready = await this.log.waitFor((e) => e.event === 'ready', 'baton run ready', 20_000);
    this.port = this.log.events.find((e) => e.event === 'listening' && e.pid === ready.pid)!.port as number;
  }

  async upgrade(): Promise<void> {
    this.#wrapper!.kill('SIGUSR2');
  }

  /** Zero-code adoption does not report migrations. */
  override adoptedBy(): number | undefined {
    return undefined;
  }
}

/** `baton start` of the supervised-app fixture with 2 workers: reload (HUP), binary (USR2 + QUIT), winch (`baton upgrade`). */
export class SupervisorTarget extends BaseTarget implements Target {
  #cfg = '';
  #env: NodeJS.ProcessEnv = {};
  constructor(readonly path: 'reload' | 'binary' | 'winch') {
    super();
  }

  async start(env: NodeJS.ProcessEnv = {}): Promise<void> {
    writeApp(this.dir, 'v1');
    const t = Timeouts;
    this.#cfg = writeConfig(
      this.dir,
      [
        'workers: 2',
        `timeouts: { drainMs: ${t.drainMs}, readyMs: ${t.readyMs}, killGraceMs: ${t.killGraceMs}, fastMs: 500, livenessMs: ${t.livenessMs} }`,
        'upgrade: { healthWindowMs: 300 }',
      ].join('\n'),
    );
    this.#env = { BATON_FAULTS: this.faults, ...env };
    const master = await startMaster(this.log, this.#cfg, [], this.#env);
    this.roots.push(master.pid);
    this.port = portOf(this.log.events.find((e) => e.event === 'master-starting' && e.pid === master.pid)!);
  }

  /**
   * The current master: the one the pid file names, or — when it names nobody
   * alive (a full disk keeps a new master from writing it) — the newest live
   * master that said it was ready.
   */
  current(): number {
    let named: number | undefined;
    try {
      named = Number(fs.readFileSync(path.join(this.dir, 'app.pid'), 'utf8').trim());
    } catch {
      // no pid file: see below
    }
    if (named !== undefined && alive(named)) return named;
    const ready = this.log.events.filter((e) => e.event === 'master-ready' && alive(e.pid)).at(-1);
    if (ready) return ready.pid;
    throw new Error(`no live master: the pid file names ${named ?? 'nobody'} and no live master said it was ready`);
  }

  async upgrade(): Promise<void> {
    const master = this.current();
    if (this.path === 'reload') {
      process.kill(master, 'SIGHUP');
      return;
    }
    if (this.path === 'winch') {
      // `baton upgrade` exits non-zero on a rollback: the harness judges by serving, not by the code.
      await promisify(execFile)(process.execPath, [cli, 'upgrade', '-c', this.#cfg], {
        env: { ...process.env, ...this.#env },
        timeout: 60_000,
      }).catch((err: { stdout?: string; stderr?: string }) =>
        this.log.output.push(`[baton upgrade] ${err.stderr ?? ''}${err.stdout ?? ''}`),
      );
      return;
    }
    // binary: USR2, then QUIT the old master once a new one is ready (or give up when it is not).
    const since = this.log.events.length;
    process.kill(master, 'SIGUSR2');
    const outcome = await this.log
      .waitFor(
        (e) =>
          (e.event === 'master-ready' && e.pid !== master) ||
          (e.pid === master && (e.event === 'upgrade-failed' || e.event === 'child-master-exited')),
        'a new master ready, or the upgrade failed',
        Timeouts.readyMs * 3,
        since,
      )
      .catch(() => undefined);
    if (outcome?.event === 'master-ready') {
      try {
        process.kill(master, 'SIGQUIT');
      } catch {
        // gone already
      }
    }
  }
}

/** A target for `path`. */
export function targetFor(path: PathName): Target {
  if (path === 'takeover' || path === 'exec') return new LibraryTarget(path);
  if (path === 'run') return new RunTarget();
  return new SupervisorTarget(path);
}
