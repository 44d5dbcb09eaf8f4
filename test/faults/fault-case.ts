/**
 * One fault case: a service on one upgrade path under keep-alive load and a
 * fresh-connection prober; a failpoint armed; an upgrade; then the verdict.
 * Each case asserts:
 * - a generation serves afterwards: `SERVE_STREAK` fresh connections in a row
 *   answered, within `serveBoundMs` of the fault firing (time to serve is the
 *   time from the fault to the first answer after the last failed probe);
 * - failed requests only where the faulted process held them: a keep-alive
 *   request fails only on a connection whose last answer came from the
 *   faulted process (or, for a killed master, one of its workers); any other
 *   failure (a probe, a connection elsewhere) must stay within what the
 *   faulted process could have held without answering on it — the connections
 *   it had adopted (migrated in) plus the probes in flight, and only if it
 *   was accepting at all (it served, or was past the step where it starts to
 *   accept). Refused connections are never allowed;
 * - the next upgrade on the same path works, with 0 failed requests;
 * - no stale files in the run/socket directory (temporaries, sockets, slot
 *   directories, control sockets or pid files of dead processes);
 * - no zombie children of the service's processes;
 * - fd counts flat on the survivor: each process that existed before the
 *   fault and still serves has, idle, no more fds than it had idle before.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FailPoint } from '../../src/core/failpoint.js';
import { alive } from '../../src/core/proc.js';
import { fdKinds, treeOf, zombiesIn, allProcs, processesNaming } from './proc-scan.js';
import { targetFor, Timeouts, type PathName, type Target } from './targets.js';
import { KeepAliveLoad, Prober, Traffic, type Failure } from './traffic.js';

/**
 * What a case does to the process that reaches the step: `kill` (SIGKILL);
 * `stop` then, per policy, `forever` (baton must detect the hung peer and
 * recover), `kill` (the test SIGKILLs it `STOPPED_MS` later) or `resume`
 * (SIGCONT `STOPPED_MS` later).
 */
export const Actions = ['kill', 'stop-forever', 'stop-kill', 'stop-resume'] as const;
export type Action = (typeof Actions)[number];

export interface CaseSpec {
  path: PathName;
  /** undefined: a baseline case with no fault (the path itself is lossless). */
  step: FailPoint | undefined;
  action: Action;
  /** A fault that is not a failpoint (resources.ts): its own id and steps. */
  resource?: ResourceFault;
}

/** A resource fault (full disk, fds exhausted) in place of a failpoint. */
export interface ResourceFault {
  id: string;
  /** Before the service starts (mount a tmpfs on the run dir). */
  setup?(t: Target): void;
  /** The fault phase, under load, in place of arming a failpoint and upgrading. */
  fault(t: Target): Promise<void>;
  /** Keep-alive connections of the load (default 16; 0: the prober alone). */
  keepAlive?: number;
  /** Failures of the fault phase are expected (nobody died, fds ran out): only refused connections count. */
  failuresExpected?: boolean;
  /** After the fault phase, before the next upgrade (free the disk). */
  recover?(t: Target): Promise<void> | void;
  /** Always, at the end (unmount). */
  cleanup?(t: Target): void;
}

export interface CaseResult {
  id: string;
  ok: boolean;
  problems: string[];
  /** Failed requests of the fault window: total, held by the faulted process, others. */
  failed: number;
  held: number;
  unheld: number;
  /** Failed requests allowed beyond the held ones. */
  allowance: number;
  /** Failed requests of the next (clean) upgrade. */
  nextFailed: number;
  timeToServeMs: number | undefined;
  durationMs: number;
  firedPid: number | undefined;
  /** The tail of the service's output, for a failed case. */
  logTail: string[];
}

const KEEP_ALIVE = 16;
const PROBE_CONCURRENCY = 4;
const SERVE_STREAK = 20;
const STOPPED_MS = 1_000;
const STABLE_MS = 1_000;
/** A generation must serve again within this long of the fault. */
export const serveBoundMs = Timeouts.readyMs + Timeouts.helloMs + STOPPED_MS + 3_000;

export const caseId = (c: CaseSpec) => c.resource?.id ?? `${c.path} ${c.step ?? '(no fault)'} ${c.step ? c.action : ''}`.trim();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passed; returns its last value. */
async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

/** The pid that claimed `step` (its `<step>.fired-<pid>` file), if any. */
function firedBy(faults: string, step: string): number | undefined {
  const f = fs.readdirSync(faults).find((n) => n.startsWith(`${step}.fired-`));
  return f ? Number(f.slice(`${step}.fired-`.length)) : undefined;
}

/** Runs one case; never throws (a harness error is a problem of the case). */
export async function runCase(spec: CaseSpec): Promise<CaseResult> {
  const started = Date.now();
  const id = caseId(spec);
  const target = targetFor(spec.path);
  const problems: string[] = [];
  const traffic = new Traffic();
  /** Every pid of the service seen so far, with its parent. */
  const seen = new Map<number, number>();
  const sample = () => {
    for (const p of treeOf(target.roots).values()) if (!seen.has(p.pid)) seen.set(p.pid, p.ppid);
  };
  let sampler: NodeJS.Timeout | undefined;
  let load: KeepAliveLoad | undefined;
  let prober: Prober | undefined;
  let firedPid: number | undefined;
  let windowFailures: Failure[] = [];
  let nextFailures: Failure[] = [];
  let timeToServeMs: number | undefined;
  let held = 0;
  let allowance = 0;
  const traffics = () => {
    load = new KeepAliveLoad(traffic, `http://127.0.0.1:${target.port}`, spec.resource?.keepAlive ?? KEEP_ALIVE);
    prober = new Prober(traffic, target.port, 5, PROBE_CONCURRENCY);
  };
  const quiesce = async () => {
    await Promise.all([load?.stop(), prober?.stop()]);
    load = prober = undefined;
  };
  /** Waits until the process tree stays the same for STABLE_MS and fresh connections are answered. */
  const settle = async (what: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    let signature = '';
    let since = Date.now();
    let streak: Promise<void> = traffic.servingStreak(SERVE_STREAK, timeoutMs);
    let served = false;
    streak.then(() => (served = true)).catch(() => undefined);
    for (;;) {
      sample();
      const now = [...treeOf(target.roots).values()]
        .filter((p) => p.state !== 'Z')
        .map((p) => p.pid)
        .sort()
        .join(',');
      if (now !== signature) {
        signature = now;
        since = Date.now();
        served = false;
        streak = traffic.servingStreak(SERVE_STREAK, Math.max(1, deadline - Date.now()));
        streak.then(() => (served = true)).catch(() => undefined);
      }
      if (served && Date.now() - since >= STABLE_MS) return true;
      if (Date.now() > deadline) {
        problems.push(`${what}: no stable generation serving within ${timeoutMs} ms (tree ${signature || 'empty'})`);
        return false;
      }
      await sleep(100);
    }
  };

  try {
    spec.resource?.setup?.(target);
    await target.start();
    sampler = setInterval(sample, 50);
    sample();
    // Idle fd baseline of every process before any traffic.
    const idleBefore = new Map([...treeOf(target.roots).keys()].map((pid) => [pid, fdKinds(pid)]));
    traffics();
    await traffic.servingStreak(SERVE_STREAK, 15_000);
    const servedBefore = new Set(traffic.byPid.keys());

    // Arm, upgrade, wait for the step to be reached.
    const armedAt = Date.now();
    const armedEvents = target.log.events.length;
    let firedAt = armedAt;
    if (spec.step) fs.writeFileSync(path.join(target.faults, spec.step), spec.action === 'kill' ? 'kill' : 'stop');
    const upgrading = spec.resource ? spec.resource.fault(target) : target.upgrade();
    if (spec.step) {
      const step = spec.step;
      if (await until(() => (firedPid = firedBy(target.faults, step)) !== undefined, 20_000)) {
        firedAt = Date.now();
        const pid = firedPid!;
        if (spec.action === 'stop-kill') setTimeout(() => signal(pid, 'SIGKILL'), STOPPED_MS).unref();
        if (spec.action === 'stop-resume') setTimeout(() => signal(pid, 'SIGCONT'), STOPPED_MS).unref();
      } else {
        problems.push(`step ${step} was never reached on this path`);
        fs.rmSync(path.join(target.faults, step), { force: true });
      }
    }
    await upgrading;
    if (spec.action === 'stop-forever' && firedPid !== undefined) {
      // The others may serve on unharmed while it hangs: wait for baton to give up on it (a failure
      // reported after the fault), at most as long as its hello and ready timeouts, before judging.
      await target.log
        .waitFor(
          (e) => /failed|refused|lost/.test(e.event) || /failed/.test(String(e.msg ?? '')),
          'the hung process given up on',
          Timeouts.helloMs + Timeouts.readyMs + 1_000,
          armedEvents,
        )
        .catch(() => undefined);
    }
    const serving = await settle('after the fault', serveBoundMs + 2_000);

    // Time to serve: from the fault to the first answer after the last failed probe.
    const probeFailures = traffic.failures.filter((f) => f.source === 'probe' && f.at >= firedAt);
    if (probeFailures.length === 0) timeToServeMs = 0;
    else {
      const last = probeFailures[probeFailures.length - 1]!.at;
      const after = traffic.recent.find((s) => s.source === 'probe' && s.at >= last);
      timeToServeMs = after ? after.at - firedAt : undefined;
    }
    if (timeToServeMs === undefined || timeToServeMs > serveBoundMs)
      problems.push(`time to serve ${timeToServeMs ?? '∞'} ms > ${serveBoundMs} ms`);

    // Whom the fault took: the faulted process and, for a master, its workers.
    const dead = new Set<number>();
    if (firedPid !== undefined) {
      dead.add(firedPid);
      if (spec.step?.startsWith('master.')) for (const [pid, ppid] of seen) if (ppid === firedPid) dead.add(pid);
    }
    windowFailures = traffic.failures.filter((f) => f.at >= armedAt);
    held = windowFailures.filter((f) => f.source === 'keep-alive' && f.lastPid !== undefined && dead.has(f.lastPid)).length;
    const unheld = windowFailures.length - held;
    const deadServed = [...dead].some((pid) => traffic.byPid.has(pid));
    const adopted = [...dead].reduce((n, pid) => n + (target.adoptedBy(pid, armedEvents) ?? KEEP_ALIVE), 0);
    // Accepting: it served, or it was past the point where it takes connections (a successor once Draining
    // arrived — before Ready it must not accept, test/successor-accept-gating — any predecessor, a master's workers).
    const beforeAccepting = [
      'successor.connected',
      'successor.hello-sent',
      'successor.listeners-received',
      'successor.state-received',
      'successor.ready-sent',
    ];
    const deadAccepting = deadServed || (spec.step !== undefined && firedPid !== undefined && !beforeAccepting.includes(spec.step));
    allowance = deadAccepting || adopted > 0 ? Math.min(adopted, KEEP_ALIVE) + PROBE_CONCURRENCY : 0;
    const refused = windowFailures.filter((f) => /ECONNREFUSED/.test(f.error)).length;
    if (held > KEEP_ALIVE * 2) problems.push(`${held} failed requests held by the faulted process: more than its connections could carry`);
    if (spec.resource?.failuresExpected) allowance = unheld;
    if (unheld > allowance) {
      const sampleErr = windowFailures.filter((f) => !(f.lastPid !== undefined && dead.has(f.lastPid))).slice(0, 3);
      problems.push(
        `${unheld} failed requests not held by the faulted process (allowed ${allowance}): ${sampleErr.map((f) => `${f.source} ${f.error}`).join('; ')}`,
      );
    }
    if (refused > 0) problems.push(`${refused} connections refused`);

    // A process frozen for good stays frozen through the next upgrade (baton must route around it); it is killed at the end.

    await spec.resource?.recover?.(target);

    // Fds flat on the survivors: idle again, each one no higher than idle before.
    await quiesce();
    const survivors = [...idleBefore.keys()].filter((pid) => alive(pid) && !dead.has(pid));
    const grown = () =>
      survivors.filter((pid) => {
        const now = fdKinds(pid);
        const before = idleBefore.get(pid);
        if (!now || !before) return false;
        const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
        return total(now) > total(before);
      });
    if (!(await until(() => grown().length === 0, 3_000))) {
      for (const pid of grown())
        problems.push(`fds of survivor ${pid}: ${fmtKinds(idleBefore.get(pid))} idle before, ${fmtKinds(fdKinds(pid))} idle after`);
    }

    // The next upgrade works, with nothing lost (not tried when nothing serves: the case failed already).
    if (!serving) throw new Skipped('nothing serves after the fault: the next upgrade and the file checks are skipped');
    traffics();
    await traffic.servingStreak(SERVE_STREAK, 10_000).catch(() => problems.push('not serving before the next upgrade'));
    const nextAt = Date.now();
    const answeredBefore = new Set([...traffic.byPid.keys(), ...servedBefore]);
    await target.upgrade();
    try {
      await traffic.next((s) => !answeredBefore.has(s.pid), 'a new generation answering after the next upgrade', 20_000);
    } catch (err) {
      problems.push(`next upgrade: ${(err as Error).message}`);
    }
    await settle('after the next upgrade', 20_000);
    await quiesce();
    nextFailures = traffic.failures.filter((f) => f.at >= nextAt);
    if (nextFailures.length > 0)
      problems.push(
        `next upgrade: ${nextFailures.length} failed requests (${nextFailures
          .slice(0, 3)
          .map((f) => f.error)
          .join('; ')})`,
      );

    // No stale files, no zombies.
    const stale = () => staleFiles(target);
    if (!(await until(() => stale().length === 0, 3_000))) problems.push(`stale files: ${stale().join(', ')}`);
    const zombies = () =>
      zombiesIn(
        treeOf(
          [...target.roots, ...seen.keys()].filter((pid) => pid !== process.pid),
          allProcs(),
        ),
      );
    if (!(await until(() => zombies().length === 0, 2_000)))
      problems.push(
        `zombies: ${zombies()
          .map((z) => `${z.pid} (parent ${z.ppid})`)
          .join(', ')}`,
      );
  } catch (err) {
    problems.push(err instanceof Skipped ? err.message : `harness: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    clearInterval(sampler);
    await quiesce().catch(() => undefined);
    sample();
    // Those that left the tree too (reparented to init): else they outlive the run, serving on.
    const all = [...new Set([...seen.keys(), ...target.roots, ...processesNaming(target.dir)])];
    for (const pid of all) signal(pid, 'SIGKILL');
    // SIGCONT lets a stopped process take its SIGKILL.
    for (const pid of all) signal(pid, 'SIGCONT');
    await until(() => all.every((pid) => !alive(pid)), 5_000);
    try {
      spec.resource?.cleanup?.(target);
    } catch (err) {
      problems.push(`cleanup: ${(err as Error).message}`);
    }
  }
  const result: CaseResult = {
    id,
    ok: problems.length === 0,
    problems,
    failed: windowFailures.length,
    held,
    unheld: windowFailures.length - held,
    allowance,
    nextFailed: nextFailures.length,
    timeToServeMs,
    durationMs: Date.now() - started,
    firedPid,
    logTail: target.log.output.slice(-Number(process.env.FAULTS_LOG_LINES ?? 30)),
  };
  for (const d of [target.dir, target.faults]) fs.rmSync(d, { recursive: true, force: true });
  return result;
}

/** Ends a case early: what follows cannot be judged. */
class Skipped extends Error {}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

const fmtKinds = (m: Map<string, number> | undefined) => (m ? [...m].map(([k, v]) => `${k} ${v}`).join(' ') : 'gone');

/**
 * Files of the run/socket directory that outlived their process: temporaries
 * (`*.tmp`), names carrying the pid of a dead process (sockets, slot and
 * control sockets of a master), pid files naming a dead process.
 */
export function staleFiles(target: Target): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = path.join(dir, e.name);
      const rel = path.relative(target.dir, full);
      if (e.name.endsWith('.tmp')) out.push(rel);
      else {
        const pids = [...e.name.matchAll(/(?:-m|-master-|\.sock\.|\.)(\d{2,})(?=\.|$)/g)].map((m) => Number(m[1]));
        if (pids.some((pid) => !alive(pid))) out.push(rel);
        else if (/\.pid(\.oldbin)?$/.test(e.name)) {
          const pid = Number(fs.readFileSync(full, 'utf8').trim());
          if (!alive(pid)) out.push(`${rel} (names dead pid ${pid})`);
        }
      }
      if (e.isDirectory()) walk(full);
    }
  };
  walk(target.dir);
  return out;
}
