/**
 * The supervisor's one structured logger (pino, JSON lines). Logs go to a file
 * when configured, else to stdout. {@link SupervisorLog.reopen} reopens the
 * file by name, for logrotate's rename-then-USR1.
 */
import pino, { type Logger } from 'pino';

/** The master's logger and what it writes to. */
export interface SupervisorLog {
  readonly log: Logger;
  /** Reopens the log file by its name (after an external rename); a no-op for stdout. */
  reopen(): void;
  /** Writes out what is buffered (the destination is synchronous: nothing is). */
  flush(): void;
}

/** A logger writing to `file` (created if missing) or stdout, at `level`. */
export function createSupervisorLog(file: string | undefined, level: string, base: Record<string, unknown>): SupervisorLog {
  // Synchronous writes: a master's log is low-volume, and a line logged just
  // before exit or a crash must not be lost.
  const dest = file ? pino.destination({ dest: file, sync: true, mkdir: true }) : pino.destination({ dest: 1, sync: true });
  const log = pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, dest);
  return {
    log,
    reopen: () => {
      if (file) dest.reopen();
    },
    flush: () => dest.flushSync(),
  };
}
