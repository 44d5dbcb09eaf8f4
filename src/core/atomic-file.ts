import fs from 'node:fs';
import path from 'node:path';
import { alive } from './proc.js';

/**
 * Replaces `file` with `content` atomically and durably: a reader sees the old
 * content or the new one, never a mix, even across a crash or power loss. The
 * content goes to a temporary file in the same directory, which is fsynced and
 * renamed over `file`; the directory is fsynced so the rename itself lasts.
 */
export function writeFileAtomic(file: string, content: string | Uint8Array, mode = 0o644): void {
  removeStaleTemps(file);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    if (typeof content === 'string') fs.writeSync(fd, content);
    else fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(path.dirname(file));
}

/** Renames `from` to `to` and makes the rename durable. */
export function renameDurable(from: string, to: string): void {
  fs.renameSync(from, to);
  syncDir(path.dirname(to));
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The pid in a pid file, or undefined when it is absent or unreadable. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Writes this process's pid to `file`, atomically. */
export function writePidFile(file: string, pid = process.pid): void {
  writeFileAtomic(file, `${pid}\n`);
}

/** Removes `file` if it still names `pid` (a successor may have replaced it already). */
export function removeOwnPidFile(file: string, pid = process.pid): void {
  if (readPidFile(file) !== pid) return;
  fs.rmSync(file, { force: true });
}

/**
 * Removes the temporary files of `file` that a dead process left behind: its
 * siblings `.<name>.<pid>.tmp` ({@link writeFileAtomic}) and `<name>.<pid>.tmp`
 * (an upgrade socket bound but never published) whose pid no longer runs. A
 * process killed between creating such a file and renaming it leaves one;
 * the next writer of the same file cleans up. Never throws.
 */
export function removeStaleTemps(file: string): void {
  removeDeadTemps(path.dirname(file), path.basename(file));
}

/**
 * Removes every `[.]<name>.<pid>.tmp` in `dir` (only those of `name` when
 * given) whose pid no longer runs. For a private directory whose temporary
 * files are all baton's (a worker slot), and for {@link removeStaleTemps}.
 * Never throws.
 */
export function removeDeadTemps(dir: string, name?: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const m = /^\.?(.+)\.(\d+)\.tmp$/.exec(entry);
    if (!m || (name !== undefined && m[1] !== name)) continue;
    const pid = Number(m[2]);
    if (pid <= 0 || pid === process.pid || alive(pid)) continue;
    try {
      fs.rmSync(path.join(dir, entry), { force: true });
    } catch {
      // Not ours to remove, or gone already.
    }
  }
}
