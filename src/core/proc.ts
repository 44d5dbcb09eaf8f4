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

/**
 * When process `pid` started (field 22 of /proc/<pid>/stat, in clock ticks
 * since boot), or undefined if it does not exist or has exited. With the pid,
 * it names one process for good: a pid the kernel gave again to a newer
 * process has another start time.
 */
export function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}
