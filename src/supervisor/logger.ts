/**
 * The supervisor's one structured logger (pino). Logs go to a file when
 * configured, else to stdout, in one format per output: JSON lines, or human
 * text (pino-pretty) — by default text on a terminal and JSON elsewhere.
 * {@link SupervisorLog.reopen} reopens the file by name, for logrotate's
 * rename-then-USR1.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

/** The format asked for (config `log.format`, `--log-format`). */
export type LogFormat = 'auto' | 'text' | 'json';

/** `auto` resolved: text only to a terminal (a log file or a pipe gets JSON lines, for machines). */
export function resolveLogFormat(format: LogFormat, file: string | undefined): 'text' | 'json' {
  if (format !== 'auto') return format;
  return !file && process.stdout.isTTY ? 'text' : 'json';
}

/** The master's logger and what it writes to. */
export interface SupervisorLog {
  readonly log: Logger;
  /** Reopens the log file by its name (after an external rename); a no-op for stdout. */
  reopen(): void;
  /** Writes out what is buffered (the destination is synchronous: nothing is). */
  flush(): void;
}

/** A logger writing to `file` (created if missing) or stdout, at `level`. */
export function createSupervisorLog(
  file: string | undefined,
  level: string,
  base: Record<string, unknown>,
  format: LogFormat = 'json',
): SupervisorLog {
  // Synchronous writes: a master's log is low-volume, and a line logged just
  // before exit or a crash must not be lost.
  const dest = file ? pino.destination({ dest: file, sync: true, mkdir: true }) : pino.destination({ dest: 1, sync: true });
  const out: DestinationStream =
    resolveLogFormat(format, file) === 'text'
      ? pretty({
          destination: dest,
          sync: true,
          colorize: !file && process.stdout.isTTY,
          // One line per record: the message, then the details that are not already in it.
          singleLine: true,
          ignore: 'hostname,role,event',
          translateTime: 'SYS:HH:MM:ss.l',
        })
      : dest;
  const log = pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, out);
  return {
    log,
    reopen: () => {
      if (file) dest.reopen();
    },
    flush: () => dest.flushSync(),
  };
}
