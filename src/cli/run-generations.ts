/**
 * `baton status`'s view of generations that no master runs: those started by
 * `baton run` (or by an app on baton's library), found by their upgrade
 * sockets (`<socketDir>/<name>.sock`). Each socket that answers is asked
 * nothing — the connection closes at once, which a generation treats as a
 * probe — and its serving process is named by the socket's peer credentials.
 */
import fs from 'node:fs';
import path from 'node:path';
import { probeUnixSocket } from '../native/unix-channel.js';

/** A generation serving on an upgrade socket. */
export interface RunGeneration {
  /** The generation's name (its socket's file name). */
  name: string;
  pid: number;
  socketPath: string;
  /** The serving process's command line, from /proc (empty if it cannot be read). */
  command: string;
}

/** The generations answering on the upgrade sockets directly in `dirs` (a master's control sockets left out). */
export function findRunGenerations(dirs: readonly string[]): RunGeneration[] {
  const out: RunGeneration[] = [];
  for (const dir of new Set(dirs.map((d) => path.resolve(d)))) {
    let files: string[];
    try {
      files = fs.readdirSync(dir);
    } catch {
      continue; // no such directory: nothing runs there
    }
    for (const file of files.sort()) {
      if (!file.endsWith('.sock') || /-master-\d+\.sock$/.test(file)) continue;
      const socketPath = path.join(dir, file);
      let found;
      try {
        found = probeUnixSocket(socketPath);
      } catch {
        continue; // not ours to read (EACCES, not a socket)
      }
      if (found.kind !== 'running') continue;
      try {
        const { pid } = found.channel.peerCredentials();
        out.push({ name: file.slice(0, -'.sock'.length), pid, socketPath, command: commandOf(pid) });
      } finally {
        found.channel.close();
      }
    }
  }
  return out;
}

function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Human-readable lines for `baton status`. */
export function formatRunGenerations(generations: readonly RunGeneration[]): string {
  if (generations.length === 0) return '';
  const lines = ['generations without a master (baton run):'];
  for (const g of generations) lines.push(`  ${g.name}: pid ${g.pid}, ${g.socketPath}${g.command ? `: ${g.command}` : ''}`);
  return `${lines.join('\n')}\n`;
}
