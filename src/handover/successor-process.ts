/**
 * The exec path's successor as a process: how it ended, in words for errors,
 * and how an aborted one is stopped.
 */
import type { ChildProcess } from 'node:child_process';
import { BatonError, isBatonError } from '../core/errors.js';

/** Resolves with how `child` ended ("exited with code 1", "was killed by SIGKILL", "could not be started (…)"). */
export function childExit(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(describeExit(child.exitCode, child.signalCode));
      return;
    }
    child.once('exit', (code, signal) => resolve(describeExit(code, signal)));
    child.once('error', (err) => resolve(`could not be started (${err.message})`));
  });
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/**
 * Turns a failure during a handover into the error reported to the user: a
 * BatonError as it is, a lost channel as ERR_BATON_SUCCESSOR_EXITED naming how
 * the successor process ended (waiting for its exit at most `graceMs`).
 */
export async function explainSuccessorFailure(
  err: unknown,
  child: ChildProcess | undefined,
  exit: Promise<string> | undefined,
  pid: number,
  graceMs: number,
): Promise<BatonError> {
  if (isBatonError(err) && err.code !== 'ERR_BATON_CHANNEL_CLOSED') return err;
  let how = 'closed the upgrade channel';
  if (child && exit) {
    const timeout = new Promise<string>((r) => setTimeout(r, graceMs, 'closed the upgrade channel').unref());
    how = await Promise.race([exit, timeout]);
  }
  return new BatonError('ERR_BATON_SUCCESSOR_EXITED', `successor pid ${pid} ${how} before it was ready`, { cause: err });
}

/** Stops an aborted exec successor: SIGTERM, then SIGKILL after `graceMs` if it still runs. */
export function stopSuccessorProcess(child: ChildProcess | undefined, exit: Promise<string> | undefined, graceMs: number): void {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  timer.unref();
  void exit?.then(() => clearTimeout(timer));
}
