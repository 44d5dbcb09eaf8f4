import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
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

/**
 * Starts the successor as nginx does on SIGUSR2: the listening fds become the
 * child's fds 3, 4, … with LISTEN_FDS / LISTEN_FDNAMES set, and the channel fd
 * follows them, named by BATON_CHANNEL_FD.
 *
 * LISTEN_PID must be the child's own pid, which a Node parent cannot know
 * before exec; a `/bin/sh` trampoline sets it to `$$` and execs the command in
 * the same process. The fds given here stay owned by the caller (spawn dups
 * them into the child); the caller closes `channelFd` after this returns.
 */
export function spawnSuccessor(
  listeners: readonly { name: string; fd: number }[],
  channelFd: number,
  exec: ExecCommand = {},
): ChildProcess {
  const command = exec.command ?? process.execPath;
  const args = exec.args ?? [...process.execArgv, ...process.argv.slice(1)];
  const env: NodeJS.ProcessEnv = {
    ...(exec.env ?? process.env),
    LISTEN_FDS: String(listeners.length),
    LISTEN_FDNAMES: listeners.map((l) => l.name).join(':'),
    [CHANNEL_FD_ENV]: String(LISTEN_FDS_START + listeners.length),
  };
  delete env.LISTEN_PID;
  const stdio: StdioOptions = ['inherit', 'inherit', 'inherit', ...listeners.map((l) => l.fd), channelFd];
  return spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'baton-exec', command, ...args], {
    stdio,
    env,
    cwd: exec.cwd ?? process.cwd(),
  });
}
