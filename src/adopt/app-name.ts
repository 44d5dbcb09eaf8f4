/** The default name of a zero-code app's generation (its upgrade socket's name). */
import crypto from 'node:crypto';
import path from 'node:path';

/**
 * `<file name without extension>-<8 hex digits of the SHA-256 of the entry's
 * absolute path>`: readable, and unique per app — two apps whose entry files
 * share a name (`server.js` in two projects) never take each other over.
 * `entry` must be absolute (the resolved entry module).
 */
export function defaultAppName(entry: string): string {
  const base =
    path
      .basename(entry)
      .replace(/\.[^.]*$/, '')
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 55) || 'app';
  const hash = crypto.createHash('sha256').update(entry).digest('hex').slice(0, 8);
  return `${base}-${hash}`;
}
