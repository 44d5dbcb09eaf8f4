import fs from 'node:fs';

/**
 * True while process `pid` exists and has not exited. A zombie waiting for
 * its parent counts as gone: it holds no sockets and no memory. Read from
 * /proc/<pid>/stat, so it works for processes of any parent.
 */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
