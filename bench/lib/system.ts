/**
 * What the peer benchmark knows about a system under test: a small pluggable
 * definition — how to start it, how to upgrade it, how to tell it is serving,
 * how to stop it. Every scenario drives every system through this shape only,
 * so baton and its peers are measured the same way.
 */
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import type { EventLog } from './processes.js';
import { monoMs } from './processes.js';

/** What a scenario needs the system to serve, and where it may keep its files. */
export interface SystemContext {
  /** A fresh private directory for this instance (config, pid files, sockets). */
  dir: string;
  /** Fixture events (JSON lines on stdout) of the Node processes this instance spawns. */
  log: EventLog;
  /** Serve an HTTP/2 prior-knowledge (h2c) listener too. */
  h2c: boolean;
  /** Serve the WebSocket echo at /ws. */
  websocket: boolean;
  /** keepAliveTimeout of the Node servers (ms); Node's default when undefined. */
  keepAliveTimeoutMs?: number;
}

/** One upgrade as the system performed it; all times on the monotonic clock of {@link monoMs}. */
export interface UpgradeResult {
  /** The upgrade action was issued (spawn, signal, command). */
  startedAt: number;
  /** The new generation serves. */
  readyAt: number;
  /**
   * Resolves with the moment the previous generation was gone (its processes
   * exited), or null when some were still alive after `timeoutMs`.
   */
  gone(timeoutMs: number): Promise<number | null>;
}

/** A started system. */
export interface RunningSystem {
  /** HTTP/1.1 (and WebSocket) port on 127.0.0.1. */
  readonly httpPort: number;
  /** h2c port on 127.0.0.1, when asked for. */
  readonly h2cPort: number | undefined;
  /** Every process of the system right now (both generations during an upgrade): for memory. */
  pids(): number[];
  /** Performs one upgrade; resolves once the new generation serves. */
  upgrade(): Promise<UpgradeResult>;
  /** Stops everything it started; resolves once it is gone. */
  stop(): Promise<void>;
}

/** A system under test. */
export interface SystemDefinition {
  /** Stable id, used in the JSON and on the command line (`--systems`). */
  id: string;
  /** Short name in tables and plots. */
  label: string;
  /** What serves the requests and how it upgrades, for the report. */
  description: string;
  /** Why this system cannot run on this machine, or null when it can. */
  unavailable(): string | null;
  /** The tool and version behind it (e.g. `nginx/1.22.1`), for the report. */
  version(): string;
  /** Protocols it can serve; a scenario needing one it lacks reports it as skipped. */
  supports: { h2c: boolean; websocket: boolean };
  start(ctx: SystemContext): Promise<RunningSystem>;
}

/** True when `command` can be run (found on the PATH or by its path). */
export function haveCommand(command: string): boolean {
  const probe = spawnSync(command, ['--version'], { stdio: 'ignore' });
  return (probe.error as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT';
}

/** First line of a command's output (stdout, else stderr), or '' when it cannot run. */
export function commandVersion(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.error) return '';
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]!.trim();
}

/** Runs a command to completion; rejects with its output when it fails. */
export function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited with ${signal ?? `code ${code}`}: ${out.trim()}`)),
    );
  });
}

/**
 * Polls `check` every `intervalMs` until it returns a value other than
 * undefined/false. Only for peers that give no readiness signal (nginx's and
 * haproxy's new workers, pm2's daemon): their state is read from /proc and
 * pid files. baton's fixtures are waited for on their events instead.
 */
export async function until<T>(check: () => T | undefined | false, what: string, timeoutMs = 30_000, intervalMs = 5): Promise<T> {
  const began = monoMs();
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (monoMs() - began > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolves with `check()`'s result, or null after `timeoutMs`: the shape of {@link UpgradeResult.gone}. */
export function goneWithin(check: () => boolean): (timeoutMs: number) => Promise<number | null> {
  let at: Promise<number | null> | undefined;
  let limit = 0;
  return (timeoutMs) => {
    // One poller per upgrade, however many callers ask; a longer timeout asked later extends it.
    if (!at || timeoutMs > limit) {
      limit = timeoutMs;
      at = until(() => check() && monoMs(), 'the previous generation to exit', timeoutMs, 5).catch(() => null);
    }
    return at;
  };
}

/** A TCP port that was free a moment ago (bound to 0 and released): for systems that need a fixed port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** True when one GET / on a fresh connection to `port` answers 200. */
export function getOk(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    socket.setEncoding('latin1').on('data', (d: string) => {
      buf += d;
      if (buf.includes('\r\n')) done(buf.startsWith('HTTP/1.1 200'));
    });
    socket.on('end', () => done(buf.startsWith('HTTP/1.1 200')));
  });
}

/** Waits until `port` answers GET / with 200 (a system's start-up readiness), polling every 20 ms. */
export async function waitServing(port: number, what: string, timeoutMs = 30_000): Promise<void> {
  const began = monoMs();
  while (!(await getOk(port))) {
    if (monoMs() - began > timeoutMs) throw new Error(`${what} not serving on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
