import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventLog, FixtureEvent } from './server-process.js';
import { cli } from './supervisor.js';

/** An unmodified app of test/apps/ (sources, not compiled). */
export const appFile = (name: string) => fileURLToPath(new URL(`../../../test/apps/${name}`, import.meta.url));

/** A `baton run` started by a test. */
export interface RunningApp {
  child: ChildProcess;
  /** Waits for the 'ready' event of its app process (a pid not ready before); a broken app never gets one. */
  ready(): Promise<FixtureEvent>;
  stderr: string[];
}

/** How `baton` is started (the command before `run`), and environment added to the test's own. */
export interface BatonLauncher {
  command: readonly [string, ...string[]];
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs unmodified apps under `baton run` (JSON events on stderr feed `log`) and upgrades them by running them again.
 * `app` is a file of test/apps/ or an absolute path; the launcher defaults to this Node running the repository's CLI.
 */
export class AppRunner {
  readonly children: ChildProcess[] = [];
  constructor(
    readonly log: EventLog,
    readonly launcher: BatonLauncher = { command: [process.execPath, cli] },
  ) {}

  /** `flags`: more `baton run` options (before the app). */
  run(dir: string, app: string, env: NodeJS.ProcessEnv = {}, flags: string[] = []): RunningApp {
    const log = this.log;
    const since = log.events.length;
    const readyBefore = new Set(log.events.filter((e) => e.event === 'ready').map((e) => e.pid));
    const file = path.isAbsolute(app) ? app : appFile(app);
    const [command, ...args] = this.launcher.command;
    const argv = [...args, 'run', '--name', 'app', '--socket-dir', dir, '--quiet-ms', '50', ...flags, file];
    const child = spawn(command, argv, {
      env: { ...process.env, ...this.launcher.env, BATON_LOG: 'json', PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    const stderr: string[] = [];
    child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
    log.attach(child.stdout!);
    log.attach(child.stderr!);
    const ready = () => log.waitFor((e) => e.event === 'ready' && !readyBefore.has(e.pid), `${app} ready`, 30_000, since);
    return { child, ready, stderr };
  }

  /** Upgrades by running `app` again; resolves with the new app pid once `oldPid` has drained. */
  async upgrade(dir: string, app: string, oldPid: number, env: NodeJS.ProcessEnv = {}, flags: string[] = []): Promise<number> {
    const since = this.log.events.length;
    const pid = (await this.run(dir, app, env, flags).ready()).pid;
    await this.log.waitFor((e) => e.event === 'drained' && e.pid === oldPid, `pid ${oldPid} drained`, 30_000, since);
    return pid;
  }

  /** The port an app process listens on (its first 'listening' event). */
  portOf(pid: number): number {
    return this.log.events.find((x) => x.event === 'listening' && x.pid === pid)!.port as number;
  }

  killAll(): void {
    for (const c of this.children) c.kill('SIGKILL');
  }
}
