/**
 * Memory of benchmark processes: RSS read from /proc, sampled on a timer by
 * the bench process (measurement only, no coordination), and the process
 * tree below a set of root pids (this kernel has no /proc/<pid>/task/<tid>/children,
 * so parents are read from /proc/<pid>/stat).
 */
import fs from 'node:fs';
import { alive } from '../../src/core/proc.js';
import { monoMs } from './processes.js';

export { alive };

/** Default sampling interval (ms). */
export const RSS_INTERVAL_MS = 10;

interface RssSample {
  at: number;
  kb: number;
}

/** Reads VmRSS and VmHWM (kB) of a process; undefined once it is gone. */
export function readStatus(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rss: Number(/VmRSS:\s+(\d+)/.exec(s)?.[1]), hwm: Number(/VmHWM:\s+(\d+)/.exec(s)?.[1]) };
  } catch {
    return undefined;
  }
}

/** Live processes by parent pid, from /proc/<pid>/stat (zombies left out). */
function childrenByParent(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (after[0] === 'Z') continue;
    const ppid = Number(after[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  return children;
}

/** The live children of `pid`. */
export function childrenOf(pid: number): number[] {
  return childrenByParent().get(pid) ?? [];
}

/** Every live process below (and including) `roots`. */
export function processTree(roots: Iterable<number>): number[] {
  const children = childrenByParent();
  const seen = new Set<number>();
  const stack = [...roots].filter(alive);
  while (stack.length) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return [...seen];
}

/** Samples the RSS of the processes it watches every `intervalMs` (measurement only). */
export class RssSampler {
  readonly samples = new Map<number, RssSample[]>();
  readonly hwm = new Map<number, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly intervalMs = RSS_INTERVAL_MS) {}

  watch(pid: number): void {
    if (!this.samples.has(pid)) this.samples.set(pid, []);
    this.sample();
    this.#timer ??= setInterval(() => this.sample(), this.intervalMs);
  }

  sample(): void {
    const at = monoMs();
    for (const [pid, list] of this.samples) {
      const s = readStatus(pid);
      if (!s) continue;
      list.push({ at, kb: s.rss });
      this.hwm.set(pid, s.hwm);
    }
  }

  forget(pid: number): void {
    this.samples.delete(pid);
    if (this.samples.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.samples.clear();
  }

  /** Last sample at or before `t`, max in [from, to], last sample overall up to `to`. */
  summary(pid: number, before: number, from: number, to: number): { beforeMB: number; peakMB: number; lastMB: number; n: number } {
    const list = this.samples.get(pid) ?? [];
    const mb = (kb: number) => kb / 1024;
    const pre = list.filter((s) => s.at <= before);
    const during = list.filter((s) => s.at >= from && s.at <= to);
    const upTo = list.filter((s) => s.at <= to);
    return {
      beforeMB: mb(pre.at(-1)?.kb ?? list[0]?.kb ?? NaN),
      peakMB: mb(Math.max(...during.map((s) => s.kb), pre.at(-1)?.kb ?? 0)),
      lastMB: mb(upTo.at(-1)?.kb ?? NaN),
      n: during.length,
    };
  }
}

/** One sample of a {@link GroupRssSampler}: the sum over the group and each process's share. */
export interface GroupSample {
  at: number;
  totalKb: number;
  byPid: Record<number, number>;
}

/**
 * Samples the summed RSS of a changing set of processes — a system's whole
 * process tree (master, workers, both generations during an upgrade). RSS
 * counts shared pages once per process, so a forked worker's pages shared with
 * its master are counted twice: the sum is an upper bound of the memory used.
 */
export class GroupRssSampler {
  readonly samples: GroupSample[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly pids: () => number[],
    readonly intervalMs = RSS_INTERVAL_MS,
  ) {}

  start(): void {
    this.sample();
    this.#timer ??= setInterval(() => this.sample(), this.intervalMs);
  }

  sample(): void {
    const at = monoMs();
    const byPid: Record<number, number> = {};
    let totalKb = 0;
    for (const pid of this.pids()) {
      const s = readStatus(pid);
      // A process between fork and exec, or exiting, may have no VmRSS line.
      if (!s || !Number.isFinite(s.rss)) continue;
      byPid[pid] = s.rss;
      totalKb += s.rss;
    }
    this.samples.push({ at, totalKb, byPid });
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Summed RSS (MB) just before `from`, its peak in [from, to], and the last sample up to `to`; the most processes seen at once. */
  window(from: number, to: number): { beforeMB: number; peakMB: number; afterMB: number; maxProcesses: number; samples: number } {
    const pre = this.samples.filter((s) => s.at <= from).at(-1) ?? this.samples[0];
    const during = this.samples.filter((s) => s.at >= from && s.at <= to);
    const last = this.samples.filter((s) => s.at <= to).at(-1);
    const mb = (kb: number | undefined) => (kb ?? NaN) / 1024;
    return {
      beforeMB: mb(pre?.totalKb),
      peakMB: mb(Math.max(pre?.totalKb ?? 0, ...during.map((s) => s.totalKb))),
      afterMB: mb(last?.totalKb),
      maxProcesses: Math.max(0, ...during.map((s) => Object.keys(s.byPid).length)),
      samples: during.length,
    };
  }
}
