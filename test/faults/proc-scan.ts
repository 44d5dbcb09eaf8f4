/**
 * What /proc says about the processes of one fault case: the tree under the
 * processes the harness started, zombies among their children, open fds and
 * RSS. Read directly from /proc/<pid>/{stat,fd,status}, so processes of any
 * parent (an exec successor is a child of its predecessor) are seen alike.
 */
import fs from 'node:fs';

/** One line of /proc/<pid>/stat: parent and state (R, S, T stopped, Z zombie…). */
export interface ProcStat {
  pid: number;
  ppid: number;
  state: string;
}

/** /proc/<pid>/stat of `pid`, or undefined once it is gone. */
export function procStat(pid: number): ProcStat | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pid, state: rest[0]!, ppid: Number(rest[1]) };
}

/** Every process on the machine (pid → stat), one scan of /proc. */
export function allProcs(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s) out.set(s.pid, s);
  }
  return out;
}

/** `roots` and every live descendant of them (zombies included: they are still children). */
export function treeOf(roots: Iterable<number>, procs = allProcs()): Map<number, ProcStat> {
  const children = new Map<number, number[]>();
  for (const p of procs.values()) {
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  const out = new Map<number, ProcStat>();
  const queue = [...roots].filter((pid) => procs.has(pid));
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (out.has(pid)) continue;
    out.set(pid, procs.get(pid)!);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/**
 * Zombies whose parent is one of the case's live (non-zombie) processes other
 * than this harness: a baton process that does not reap an exited child.
 */
export function zombiesIn(tree: Map<number, ProcStat>): ProcStat[] {
  return [...tree.values()].filter((p) => p.state === 'Z' && p.ppid !== process.pid && tree.get(p.ppid)?.state !== 'Z');
}

/** Open fds of `pid` by kind (socket, pipe, anon_inode, file…), or undefined once it is gone. */
export function fdKinds(pid: number): Map<string, number> | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const kinds = new Map<string, number>();
  for (const n of names) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${n}`);
    } catch {
      continue; // closed meanwhile
    }
    const kind = /^(socket|pipe|anon_inode):/.exec(target)?.[1] ?? (target.startsWith('/dev/') ? 'dev' : 'file');
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return kinds;
}

/** Total open fds of `pid`, or undefined once it is gone. */
export function fdCount(pid: number): number | undefined {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** Resident set size of `pid` in KiB (VmRSS), or undefined once it is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Live processes (other than this one) whose command line or environment
 * names `dir`: a case's processes that left its tree — reparented to init
 * when their parent died (a master killed mid-upgrade leaves its workers and
 * its successor behind) — and so escape {@link treeOf}.
 */
export function processesNaming(dir: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const names = (file: string) => fs.readFileSync(`/proc/${name}/${file}`, 'utf8').includes(dir);
      if (names('cmdline') || names('environ')) out.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}
