import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../../src/core/atomic-file.js';
import { controlRequest, controlSocketPath } from '../../src/supervisor/control.js';
import type { MasterStatus } from '../../src/supervisor/master.js';
import { freePort } from './socket-activate.js';
import { HttpLoad } from './http-load.js';
import { fixture, killAll, tempDir, type EventLog, type FixtureEvent } from './server-process.js';

/** The compiled `baton` command. */
export const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** A supervised app in `dir`: an entry module serving `body` (rewrite it to change the app's code). */
export function writeApp(dir: string, body: string, file = 'app.mjs'): string {
  const entry = path.join(dir, file);
  const lib = fixture('supervised-app');
  // Replaced atomically, as a deploy should: a worker starting while the file is rewritten in place
  // may read it empty (the overlapping-upgrades test rewrites it every 200 ms during reloads).
  writeFileAtomic(entry, `import { serve } from ${JSON.stringify(lib)};\nawait serve({ body: ${JSON.stringify(body)} });\n`);
  return entry;
}

/** Writes a YAML config in `dir` (runDir is `dir`; one listener 'http' on a free port; default timeouts and restart unless `extra` sets them). */
export function writeConfig(dir: string, extra: string, file = 'baton.yaml'): string {
  const cfg = path.join(dir, file);
  fs.writeFileSync(
    cfg,
    [
      'name: app',
      'app: app.mjs',
      `runDir: ${dir}`,
      'listeners:',
      '  http: { host: 127.0.0.1, port: 0 }',
      extra.includes('timeouts:') ? '' : 'timeouts: { drainMs: 5000, readyMs: 15000, killGraceMs: 1000 }',
      extra.includes('restart:') ? '' : 'restart: { initialDelayMs: 50 }',
      extra,
    ].join('\n'),
  );
  return cfg;
}

/** A running master started by the test: its process, and the port of listener 'http'. */
export interface StartedMaster {
  child: ChildProcess;
  pid: number;
  port: number;
}

/** Runs `baton start -c cfg` and resolves once its workers serve. Its stdout (and its workers') feeds `log`. */
export async function startMaster(log: EventLog, cfg: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<StartedMaster> {
  const child = spawn(process.execPath, [cli, 'start', '-c', cfg, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  log.attach(child.stdout!);
  readline.createInterface({ input: child.stderr! }).on('line', (line) => log.output.push(`[stderr ${child.pid}] ${line}`));
  const pid = child.pid!;
  const starting = await log.waitFor((e) => e.event === 'master-starting' && e.pid === pid, `master ${pid} starting`, 20_000);
  await log.waitFor((e) => e.event === 'master-ready' && e.pid === pid, `master ${pid} ready`, 30_000);
  return { child, pid, port: portOf(starting) };
}

/** The port of listener 'http' in a 'master-starting' event (0 for a master without one). */
export function portOf(e: FixtureEvent): number {
  const l = (e.listeners as { name: string; port: number }[]).find((x) => x.name === 'http');
  return l?.port ?? 0;
}

/** Asks master `pid` (name 'app', run dir `dir`) for its status. */
export async function statusOf(dir: string, pid: number): Promise<MasterStatus> {
  return (await controlRequest(controlSocketPath(dir, 'app', pid), { cmd: 'status' })) as MasterStatus;
}

/** The pid in a pid file, or undefined. */
export function pidIn(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** Waits for the next event matching `match` after index `since`. */
export function next(
  log: EventLog,
  what: string,
  match: (e: FixtureEvent) => boolean,
  since: number,
  timeoutMs = 30_000,
): Promise<FixtureEvent> {
  return log.waitFor(match, what, timeoutMs, since);
}

/** What {@link writeAppConfig} writes besides the defaults. */
export interface AppConfigOptions {
  /** Worker count (default 2). */
  workers?: number;
  /** Environment of the app, on top of PORT and BATON_READY_QUIET_MS=50 (which it may override). */
  env?: Record<string, string>;
  /** Further YAML lines (timeouts, upgrade, consistency, …). */
  extra?: string;
}

/**
 * A config `baton.yaml` in `dir` for an unmodified app (zero-code adoption):
 * name 'app', runDir `dir`, listener 'http' on a free port, which the app is
 * told to listen on (PORT), in `options.workers` workers (default 2).
 */
export async function writeAppConfig(dir: string, app: string, options: AppConfigOptions = {}): Promise<{ port: number; cfg: string }> {
  const port = await freePort();
  const cfg = path.join(dir, 'baton.yaml');
  const env = { PORT: String(port), BATON_READY_QUIET_MS: '50', ...options.env };
  fs.writeFileSync(
    cfg,
    [
      'name: app',
      `app: ${app}`,
      `runDir: ${dir}`,
      `workers: ${options.workers ?? 2}`,
      'listeners:',
      `  http: { host: 127.0.0.1, port: ${port} }`,
      `env: ${JSON.stringify(env)}`,
      options.extra ?? '',
    ].join('\n'),
  );
  return { port, cfg };
}

/** A master of the supervised app (body v1) in a fresh run dir, under keep-alive load once `warmup` requests succeeded. */
export interface MasterUnderLoad {
  dir: string;
  cfg: string;
  master: StartedMaster;
  load: HttpLoad;
}

/**
 * Starts `baton start` on a config made of `extra` with `connections` keep-alive
 * clients on its 'http' listener; both are stopped (SIGKILL, load stopped) at
 * the end of test `t` if the test did not end them itself.
 */
export async function masterUnderLoad(
  t: { after(fn: () => unknown): void },
  log: EventLog,
  extra: string,
  connections = 64,
  warmup = 200,
): Promise<MasterUnderLoad> {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, extra);
  const master = await startMaster(log, cfg);
  t.after(() => killAll([master.pid]));
  const load = new HttpLoad(`http://127.0.0.1:${master.port}`, connections);
  t.after(() => load.stop());
  await load.waitForMore(warmup);
  return { dir, cfg, master, load };
}

/** QUIT to a master the test started; resolves once it has exited. */
export async function quit(master: StartedMaster): Promise<void> {
  const exited = master.child.exitCode !== null || master.child.signalCode !== null ? undefined : once(master.child, 'exit');
  master.child.kill('SIGQUIT');
  await exited;
}
