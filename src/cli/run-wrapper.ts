/**
 * `baton run`'s own process: it starts the app as a child (`node --import
 * <register> app.js …`) and stays its parent across upgrades, so that whoever
 * started `baton run` — a shell, systemd — keeps one process whose life is the
 * service's.
 *
 * SIGUSR2 to it upgrades by takeover: a new child of the same command line
 * takes the running one over through its upgrade socket (the app's own exec
 * path would make the new generation a child of the old one, outside this
 * process, and this process would exit with the old one). SIGTERM, SIGHUP,
 * SIGQUIT and SIGUSR1 go to every child; SIGINT from a terminal reaches them
 * directly. It exits when its last child has exited, with that child's status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';

/** Signals passed on to the app's processes. */
const FORWARDED = ['SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1'] as const;

/**
 * Runs `argv` (a Node command line, without the Node binary) as a child until
 * no generation of it is left. Resolves with the exit status for this process.
 * Installs signal handlers on `process`; call once.
 */
export function runWrapped(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const children = new Set<ChildProcess>();
  return new Promise((resolve) => {
    const start = () => {
      const child = spawn(process.execPath, argv, { stdio: 'inherit', env });
      children.add(child);
      child.once('exit', (code, signal) => {
        children.delete(child);
        if (children.size > 0) return; // a newer (or older) generation serves on
        resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
      });
      child.once('error', () => {
        // spawn failed: 'exit' may not follow
        if (children.delete(child) && children.size === 0) resolve(1);
      });
    };
    for (const sig of FORWARDED) process.on(sig, () => children.forEach((c) => c.kill(sig)));
    process.on('SIGINT', () => undefined); // a terminal's Ctrl+C reaches the app directly
    // A takeover successor: the running generation hands over to it, or keeps serving if it fails.
    process.on('SIGUSR2', start);
    start();
  });
}
