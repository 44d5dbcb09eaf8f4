/**
 * Turning the addon's negative errno results into errors shaped like Node's own.
 *
 * @module
 */
import { getSystemErrorName } from 'node:util';

/**
 * An Error shaped like Node's system errors: `code` ('ECONNREFUSED'), `errno` (negative,
 * like Node's), `syscall`, `path` when given, and the message `<syscall> <code>[ <path>]`,
 * e.g. `connect ECONNREFUSED /run/app/ctl.sock`.
 *
 * @param negErrno a negative errno as returned by the addon (e.g. -111).
 */
export function systemError(negErrno: number, syscall: string, path?: string): NodeJS.ErrnoException {
  let code = 'UNKNOWN';
  if (Number.isInteger(negErrno) && negErrno < 0) {
    try {
      code = getSystemErrorName(negErrno);
    } catch {
      code = 'UNKNOWN';
    }
  }
  const message = path === undefined ? `${syscall} ${code}` : `${syscall} ${code} ${path}`;
  const error = new Error(message) as NodeJS.ErrnoException;
  error.code = code;
  error.errno = negErrno;
  error.syscall = syscall;
  if (path !== undefined) error.path = path;
  Error.captureStackTrace(error, systemError);
  return error;
}

/**
 * Return `result` unless it is a negative errno, in which case throw
 * {@link systemError}(result, syscall, path).
 */
export function check(result: number, syscall: string, path?: string): number;
export function check<T extends object>(result: T | number, syscall: string, path?: string): T;
export function check<T>(result: T | number, syscall: string, path?: string): T | number {
  if (typeof result === 'number' && result < 0) {
    const error = systemError(result, syscall, path);
    Error.captureStackTrace(error, check);
    throw error;
  }
  return result;
}
