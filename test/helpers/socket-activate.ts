/** systemd's own socket-activation tool, driven by tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import type { EventLog } from './server-process.js';

export const ACTIVATE = '/usr/bin/systemd-socket-activate';
/** CI installs the tool (Debian's systemd package); elsewhere the file is skipped when it is missing. */
export const activateSkip = !fs.existsSync(ACTIVATE) && !process.env.CI ? `${ACTIVATE} is not installed (apt-get install systemd)` : false;

/** A port free at the time of the call: bound on 127.0.0.1:0, read, released. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts `command` under systemd-socket-activate listening on 127.0.0.1:`port`
 * and resolves once the socket is bound (its "Listening on" line): the command
 * itself starts at the first connection.
 */
export async function activate(
  log: EventLog,
  port: number,
  env: Record<string, string>,
  fdName: string | undefined,
  command: string[],
): Promise<ChildProcess> {
  const args = ['-l', `127.0.0.1:${port}`, ...(fdName ? [`--fdname=${fdName}`] : [])];
  // Only -E variables (and TERM, PATH, USER, HOME) reach the program.
  for (const [k, v] of Object.entries(env)) args.push('-E', `${k}=${v}`);
  args.push(...command);
  const child = spawn(ACTIVATE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  log.attach(child.stdout!);
  const bound = new Promise<void>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stderr! });
    rl.on('line', (line) => {
      log.output.push(`[stderr ${child.pid}] ${line}`);
      if (line.startsWith(`Listening on 127.0.0.1:${port} `)) resolve();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`systemd-socket-activate exited (${signal ?? code}) before binding; output:\n${log.output.join('\n')}`)),
    );
    child.once('error', reject);
  });
  await bound;
  return child;
}
