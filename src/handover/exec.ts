import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { compileCacheEnv } from './compile-cache.js';
import { CHANNEL_FD_ENV, LISTEN_FDS_START } from './inherit.js';

/** What the exec path runs: by default this same program, re-read from disk. */
export interface ExecCommand {
  /** Executable; default `process.execPath` (the Node binary at that path now: a replaced binary is picked up). */
  command?: string;
  /** Arguments; default `[...process.execArgv, ...process.argv.slice(1)]`. */
  args?: readonly string[];
  /** Environment; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Options of {@link spawnWithListeners}. */
export interface SpawnWithListenersOptions {
  /** fds placed right after the listeners (fd 3 + listeners.length, …), e.g. a channel. */
  extraFds?: readonly number[];
  /** Add a Node IPC channel after the fds (the child's `process.send`). */
  ipc?: boolean;
  /** Extra variables over `exec.env`. */
  env?: NodeJS.ProcessEnv;
  /** stdin, stdout, stderr of the child; default inherited. */
  stdio?: readonly ['inherit' | 'ignore' | 'pipe', 'inherit' | 'ignore' | 'pipe', 'inherit' | 'ignore' | 'pipe'];
  /** Start the child in its own process group (a terminal's Ctrl+C does not reach it). */
  detached?: boolean;
}

/**
 * Spawns `exec` with `listeners` as its fds 3, 4, … and LISTEN_FDS,
 * LISTEN_FDNAMES and LISTEN_PID set as systemd does, so the child finds them
 * with the LISTEN_FDS convention.
 *
 * LISTEN_PID must be the child's own pid, which a Node parent cannot know
 * before exec; a `/bin/sh` trampoline sets it to `$$` and execs the command in
 * the same process. The fds given here stay owned by the caller (spawn dups
 * them into the child).
 */
export function spawnWithListeners(
  listeners: readonly { name: string; fd: number }[],
  exec: ExecCommand = {},
  options: SpawnWithListenersOptions = {},
): ChildProcess {
  const command = exec.command ?? process.execPath;
  const args = exec.args ?? [...process.execArgv, ...process.argv.slice(1)];
  const env: NodeJS.ProcessEnv = {
    ...(exec.env ?? process.env),
    ...options.env,
    LISTEN_FDS: String(listeners.length),
    LISTEN_FDNAMES: listeners.map((l) => l.name).join(':'),
  };
  delete env.LISTEN_PID;
  const stdio: StdioOptions = [
    ...(options.stdio ?? ['inherit', 'inherit', 'inherit']),
    ...listeners.map((l) => l.fd),
    ...(options.extraFds ?? []),
    ...(options.ipc ? ['ipc' as const] : []),
  ];
  return spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'baton-exec', command, ...args], {
    stdio,
    env,
    cwd: exec.cwd ?? process.cwd(),
    detached: options.detached ?? false,
  });
}

/**
 * Starts the successor as nginx does on SIGUSR2: the listening fds become the
 * child's fds 3, 4, … with LISTEN_FDS / LISTEN_FDNAMES set, and the channel fd
 * follows them, named by BATON_CHANNEL_FD. The successor gets Node's module
 * compile cache unless opted out (compile-cache.ts). The caller closes
 * `channelFd` after this returns.
 */
export function spawnSuccessor(
  listeners: readonly { name: string; fd: number }[],
  channelFd: number,
  exec: ExecCommand = {},
): ChildProcess {
  return spawnWithListeners(listeners, exec, {
    extraFds: [channelFd],
    env: { ...compileCacheEnv(exec.env ?? process.env), [CHANNEL_FD_ENV]: String(LISTEN_FDS_START + listeners.length) },
  });
}
