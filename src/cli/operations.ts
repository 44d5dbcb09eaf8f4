/**
 * What the `baton` commands do to running masters: find them (pid file and
 * `<pid file>.oldbin`), signal them, ask their status, and run the whole
 * binary upgrade and rollback sequences with checks between the steps.
 */
import fs from 'node:fs';
import { readPidFile } from '../core/atomic-file.js';
import { alive } from '../core/proc.js';
import { BatonError, isBatonError } from '../core/errors.js';
import { loadConfig, type Config, type ConfigOverrides } from '../supervisor/config.js';
import { controlRequest, controlSocketPath } from '../supervisor/control.js';
import type { MasterStatus, ReloadOutcome } from '../supervisor/master.js';

/** How to find the masters: the same config file and overrides as `baton start`. */
export interface Target {
  configFile: string | undefined;
  overrides: ConfigOverrides;
}

/**
 * What a pid file says about its master: `absent` (no pid file), `stale` (it
 * names a process that is gone, or one without a control socket), `unreachable`
 * (the master may run but cannot be asked: a syscall error with its errno, or
 * no answer), `running` (it answered).
 */
export type MasterProbe =
  | { state: 'absent'; pidFile: string }
  | { state: 'stale'; pidFile: string; pid: number; why: string }
  | { state: 'unreachable'; pidFile: string; pid: number | undefined; code: string | undefined; why: string }
  | { state: 'running'; pidFile: string; pid: number; status: MasterStatus; foundBy?: 'control-socket' };

/** Where the masters of a target are. */
export interface Located {
  config: Config;
  /** The pid in the pid file, if a master answers for it. */
  current: number | undefined;
  /** The pid in `<pid file>.oldbin` (an old master during an upgrade), if it answers. */
  old: number | undefined;
  /** What the pid file and `<pid file>.oldbin` say, in full. */
  probes: { current: MasterProbe; old: MasterProbe };
}

/** Output of the long-running commands. */
export type Progress = (line: string) => void;

const POLL_MS = 50;

/** Reads the config (no app needed) and finds the masters that answer. */
export async function locate(target: Target): Promise<Located> {
  const config = loadConfig(target.configFile, target.overrides, process.cwd(), { requireApp: false });
  let current = await probeMaster(config, config.pidFile);
  let old = await probeMaster(config, `${config.pidFile}.oldbin`);
  if (current.state === 'absent' || current.state === 'stale' || old.state === 'absent' || old.state === 'stale') {
    // Pid files are best-effort (a full disk): the masters' control sockets in the run dir find them too.
    const found = await discoverMasters(config);
    const pick = (p: MasterProbe, roles: MasterStatus['role'][]): MasterProbe => {
      if (p.state !== 'absent' && p.state !== 'stale') return p;
      const s = found.find((m) => roles.includes(m.role) && m.pid !== (current.state === 'running' ? current.pid : undefined));
      return s ? { state: 'running', pidFile: p.pidFile, pid: s.pid, status: s, foundBy: 'control-socket' } : p;
    };
    current = pick(current, ['new', 'current']);
    old = pick(old, ['old']);
  }
  const pidOf = (p: MasterProbe) => (p.state === 'running' ? p.pid : undefined);
  return { config, current: pidOf(current), old: pidOf(old), probes: { current, old } };
}

/** The masters of `config`'s name that answer on a control socket in its run dir (newest first). */
async function discoverMasters(config: Config): Promise<MasterStatus[]> {
  let entries: string[];
  try {
    entries = fs.readdirSync(config.runDir);
  } catch {
    return [];
  }
  const prefix = `${config.name}-master-`;
  const pids = entries
    .filter((e) => e.startsWith(prefix) && /^\d+\.sock$/.test(e.slice(prefix.length)))
    .map((e) => Number(e.slice(prefix.length, -'.sock'.length)));
  const statuses = await Promise.all(pids.map((pid) => tryStatus(config, pid)));
  return statuses.filter((s): s is MasterStatus => s !== undefined).sort((a, b) => a.uptimeMs - b.uptimeMs);
}

/** Reads `pidFile` and asks the master it names for its status; never throws (see {@link MasterProbe}). */
export async function probeMaster(config: Config, pidFile: string): Promise<MasterProbe> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { state: 'absent', pidFile };
    return { state: 'unreachable', pidFile, pid: undefined, code, why: `cannot read the pid file ${pidFile}: ${(err as Error).message}` };
  }
  if (!Number.isInteger(pid) || pid <= 0) return { state: 'stale', pidFile, pid: 0, why: `the pid file ${pidFile} holds no pid` };
  const socket = controlSocketPath(config.runDir, config.name, pid);
  try {
    const status = (await controlRequest(socket, { cmd: 'status' }, 3_000)) as MasterStatus;
    return { state: 'running', pidFile, pid, status };
  } catch (err) {
    if (isBatonError(err) && err.code === 'ERR_BATON_NO_MASTER') {
      const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
      const why = alive(pid)
        ? `pid ${pid} (pid file ${pidFile}) runs but no master listens at ${socket} (${code}): a stale pid file naming a reused pid`
        : `the pid file ${pidFile} names pid ${pid}, which is not running (stale pid file)`;
      return { state: 'stale', pidFile, pid, why };
    }
    const code = isBatonError(err) ? err.code : (err as NodeJS.ErrnoException).code;
    return { state: 'unreachable', pidFile, pid, code, why: `master pid ${pid} cannot be reached at ${socket}: ${(err as Error).message}` };
  }
}

/** The status of master `pid`, or undefined when it does not answer. */
export async function tryStatus(config: Config, pid: number): Promise<MasterStatus | undefined> {
  try {
    return (await controlRequest(controlSocketPath(config.runDir, config.name, pid), { cmd: 'status' }, 3_000)) as MasterStatus;
  } catch {
    return undefined;
  }
}

/** The current master's pid; ERR_BATON_NO_MASTER when none runs (absent or stale pid file), ERR_BATON_CONTROL when it cannot be reached. */
export function requireCurrent(l: Located): number {
  const p = l.probes.current;
  if (p.state === 'running') return p.pid;
  throw probeError(l.config.name, p);
}

/** The error for a master that is not `running`: ERR_BATON_NO_MASTER (absent, stale) or ERR_BATON_CONTROL (unreachable). */
export function probeError(name: string, p: Exclude<MasterProbe, { state: 'running' }>): BatonError {
  if (p.state === 'absent') return new BatonError('ERR_BATON_NO_MASTER', `no master runs '${name}' (no pid file ${p.pidFile})`);
  if (p.state === 'stale') return new BatonError('ERR_BATON_NO_MASTER', `no master runs '${name}': ${p.why}`);
  return new BatonError('ERR_BATON_CONTROL', `the master of '${name}' may be running but cannot be reached: ${p.why}`);
}

/** Sends `signal` to `pid`. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  process.kill(pid, sig);
}

/** Polls `check` until it returns a value other than undefined, or throws ERR_BATON_CONTROL naming `what` after `timeoutMs`. */
export async function waitUntil<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new BatonError('ERR_BATON_CONTROL', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** True when every wanted worker of `s` is ready and none is starting. */
export function serving(s: MasterStatus): boolean {
  const ready = s.workers.filter((w) => w.state === 'ready').length;
  return ready >= s.workersWanted && !s.workers.some((w) => w.state === 'starting');
}

/** Options of {@link upgrade}. */
export interface UpgradeOptions {
  /** Stop before the final QUIT: the old master stays as a fallback (standby). */
  keepOld?: boolean;
  /** How long the new master must stay healthy; default the config's upgrade.healthWindowMs. */
  healthWindowMs?: number;
  /** URL to fetch during the window; default the config's upgrade.healthUrl. */
  healthUrl?: string;
  /** Longest wait for each step; default the config's timeouts.readyMs + drainMs. */
  stepTimeoutMs?: number;
  /** Follows the upgrade as it runs (`baton upgrade --report`). */
  observer?: UpgradeObserver;
}

/** What follows an {@link upgrade} as it runs: the recorder of `baton upgrade --report`. */
export interface UpgradeObserver {
  /** The upgrade begins: the old master and the config were located; USR2 comes next. */
  begin(oldPid: number, config: Config): void;
  /** A line of progress, without its mark (✓, ✗) or indentation. */
  progress(text: string): void;
  /** The old master's workers drained; it is told to exit once this settles (its last counts can be read now). */
  beforeQuit(): Promise<void>;
}

/** What {@link upgrade} reports. */
export interface UpgradeSummary {
  oldPid: number;
  newPid: number;
  durationMs: number;
  steps: { step: string; ms: number }[];
  /** Connections of the old master's workers: handed alive to other workers, closed cleanly, or cut. */
  migrated: number;
  drained: number;
  forced: number;
  oldMasterKept: boolean;
}

/**
 * The whole binary upgrade: USR2 → new master ready → health window → WINCH
 * (old workers drain) → QUIT (old master exits). When the new master does not
 * come up or fails its health check, it is rolled back (TERM to the new
 * master: the old one keeps serving) and ERR_BATON_UPGRADE_FAILED is thrown.
 */
export async function upgrade(target: Target, options: UpgradeOptions, progress: Progress): Promise<UpgradeSummary> {
  const t0 = performance.now();
  const steps: { step: string; ms: number }[] = [];
  const observer = options.observer;
  const say = (text: string, mark?: '✓' | '✗') => {
    observer?.progress(text);
    progress(mark ? `  ${mark} ${text}` : text);
  };
  let mark = t0;
  const step = (name: string) => {
    const now = performance.now();
    steps.push({ step: name, ms: Math.round(now - mark) });
    say(`${name} (${Math.round(now - mark)} ms)`, '✓');
    mark = now;
  };
  const l = await locate(target);
  const oldPid = requireCurrent(l);
  if (l.old !== undefined) {
    throw new BatonError(
      'ERR_BATON_UPGRADE_IN_PROGRESS',
      `an upgrade is already under way: old master pid ${l.old}, new master pid ${oldPid}`,
    );
  }
  const config = l.config;
  const stepTimeout = options.stepTimeoutMs ?? config.timeouts.readyMs + config.timeouts.drainMs;
  const window = options.healthWindowMs ?? config.upgrade.healthWindowMs;
  const healthUrl = options.healthUrl ?? config.upgrade.healthUrl;

  observer?.begin(oldPid, config);
  say(`upgrading '${config.name}': old master pid ${oldPid}`);
  const before = await tryStatus(config, oldPid);
  signal(oldPid, 'SIGUSR2');
  // The old master names its new master (childPid) from the spawn on; the
  // pid file is a fallback (it may be unwritable: a full disk). The old one
  // goes back to `running` if the new one died first.
  let child: number | undefined;
  const newPid = await waitUntil('the new master', stepTimeout, async () => {
    const old = await tryStatus(config, oldPid);
    child = old?.childPid ?? child;
    const fromFile = readPidFile(config.pidFile);
    const pid = child ?? (fromFile !== oldPid ? fromFile : undefined);
    if (pid !== undefined) {
      const s = await tryStatus(config, pid);
      if (s && s.phase === 'running' && serving(s)) return pid;
    }
    // A failed or refused upgrade leaves the old master running with a new lastError.
    if (old && old.phase === 'running' && old.lastError !== before?.lastError) {
      throw new BatonError(
        'ERR_BATON_UPGRADE_FAILED',
        `the new master did not come up: ${old.lastError ?? 'unknown reason'}; the old master serves on`,
      );
    }
    if (old && old.phase === 'running' && child !== undefined && !alive(child)) {
      throw new BatonError('ERR_BATON_UPGRADE_FAILED', `the new master (pid ${child}) exited; the old master serves on`);
    }
    return undefined;
  });
  step(`new master pid ${newPid} ready`);

  const healthy = await healthWindow(config, newPid, window, healthUrl);
  if (healthy !== true) {
    say(`health check failed: ${healthy}; rolling back`, '✗');
    signal(newPid, 'SIGTERM');
    await waitUntil('the new master to exit', stepTimeout, () => (alive(newPid) ? undefined : true));
    throw new BatonError(
      'ERR_BATON_UPGRADE_FAILED',
      `the new master failed its health check (${healthy}); rolled back to master pid ${oldPid}`,
    );
  }
  step(`healthy for ${window} ms`);

  signal(oldPid, 'SIGWINCH');
  const drained = await waitUntil("the old master's workers to stop", stepTimeout, async () => {
    const s = await tryStatus(config, oldPid);
    if (!s) throw new BatonError('ERR_BATON_UPGRADE_FAILED', `the old master (pid ${oldPid}) went away during the upgrade`);
    if (!alive(newPid)) await newMasterDied(config, oldPid, newPid, stepTimeout, say);
    return s.phase === 'standby' && s.workers.length === 0 ? s : undefined;
  });
  step('old workers drained');
  await observer?.beforeQuit();
  if (!options.keepOld) {
    signal(oldPid, 'SIGQUIT');
    await waitUntil('the old master to exit', stepTimeout, () => (alive(oldPid) ? undefined : true));
    step(`old master pid ${oldPid} exited`);
  }
  return {
    oldPid,
    newPid,
    durationMs: Math.round(performance.now() - t0),
    steps,
    migrated: drained.counters.migrated - (before?.counters.migrated ?? 0),
    drained: drained.counters.drained - (before?.counters.drained ?? 0),
    forced: drained.counters.forced - (before?.counters.forced ?? 0),
    oldMasterKept: options.keepOld === true,
  };
}

/**
 * The new master died after it was ready: waits until the old master serves
 * again (it restarts its workers when it sees the death), then throws
 * ERR_BATON_UPGRADE_FAILED saying so.
 */
async function newMasterDied(
  config: Config,
  oldPid: number,
  newPid: number,
  timeoutMs: number,
  say: (text: string, mark: '✗') => void,
): Promise<never> {
  say(`the new master (pid ${newPid}) died; waiting for the old master (pid ${oldPid}) to serve again`, '✗');
  await waitUntil('the old master to serve again', timeoutMs, async () => {
    const s = await tryStatus(config, oldPid);
    if (!s && !alive(oldPid))
      throw new BatonError('ERR_BATON_UPGRADE_FAILED', `the new master (pid ${newPid}) and the old master (pid ${oldPid}) are both gone`);
    return s && s.phase === 'running' && serving(s) ? true : undefined;
  });
  throw new BatonError(
    'ERR_BATON_UPGRADE_FAILED',
    `the new master (pid ${newPid}) died after it was ready; the old master (pid ${oldPid}) serves again`,
  );
}

/** Watches the new master for `windowMs`: it must keep serving, restart no worker, and answer `url` with 2xx. */
async function healthWindow(config: Config, pid: number, windowMs: number, url: string | undefined): Promise<true | string> {
  const first = await tryStatus(config, pid);
  if (!first) return 'the new master does not answer';
  const end = performance.now() + windowMs;
  do {
    const s = await tryStatus(config, pid);
    if (!s) return 'the new master stopped answering';
    if (!serving(s)) return `only ${s.workers.filter((w) => w.state === 'ready').length} of ${s.workersWanted} workers serve`;
    if (s.counters.restarts > first.counters.restarts) return 'a worker of the new master crashed';
    if (url) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.status < 200 || res.status > 299) return `${url} answered ${res.status}`;
      } catch (err) {
        return `${url}: ${(err as Error).message}`;
      }
    }
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS * 2, Math.max(0, end - performance.now()))));
  } while (performance.now() < end);
  return true;
}

/**
 * Rolls an upgrade back as nginx allows: the old master restarts its workers
 * (HUP, if they were stopped) and, once they serve, the new master is retired
 * (QUIT); the old master takes its pid file back.
 */
export async function rollback(target: Target, progress: Progress): Promise<{ oldPid: number; newPid: number }> {
  const l = await locate(target);
  const config = l.config;
  if (l.old === undefined) throw new BatonError('ERR_BATON_NO_MASTER', `nothing to roll back to: no old master (${config.pidFile}.oldbin)`);
  const newPid = requireCurrent(l);
  const oldPid = l.old;
  const timeout = config.timeouts.readyMs + config.timeouts.drainMs;
  progress(`rolling back '${config.name}' to master pid ${oldPid}`);
  signal(oldPid, 'SIGHUP');
  await waitUntil("the old master's workers", timeout, async () => {
    const s = await tryStatus(config, oldPid);
    return s && s.phase === 'superseded' && serving(s) ? true : undefined;
  });
  progress(`  ✓ old master pid ${oldPid} serves`);
  signal(newPid, 'SIGQUIT');
  await waitUntil('the new master to exit', timeout, () => (alive(newPid) ? undefined : true));
  progress(`  ✓ new master pid ${newPid} retired`);
  await waitUntil('the pid file', timeout, () => (readPidFile(config.pidFile) === oldPid ? true : undefined));
  return { oldPid, newPid };
}

/**
 * `baton reload`: HUP to the current master, then waits for the outcome of a
 * reload that covers this request (one already under way does not) and
 * resolves with it when every worker runs the new code; throws
 * ERR_BATON_RELOAD_FAILED when the reload was refused (nothing changed) or
 * some new workers failed (their old ones serve on), ERR_BATON_CONTROL when
 * the master died or did not finish in time.
 */
export async function reload(target: Target, progress: Progress): Promise<ReloadOutcome | undefined> {
  const l = await locate(target);
  const pid = requireCurrent(l);
  const before = (l.probes.current as Extract<MasterProbe, { state: 'running' }>).status;
  signal(pid, 'SIGHUP');
  progress(`sent HUP to master pid ${pid}`);
  // A master of an older baton does not report reloads: the signal is all we can do.
  if (before.reload === undefined) return undefined;
  const t = l.config.timeouts;
  const outcome = await waitUntil(`the reload of master pid ${pid}`, t.readyMs + t.drainMs + 5_000, async () => {
    const s = await tryStatus(l.config, pid);
    if (!s) {
      if (!alive(pid)) throw new BatonError('ERR_BATON_CONTROL', `master pid ${pid} exited during the reload`);
      return undefined;
    }
    const last = s.reload.last;
    return last && last.request > before.reload.requests ? last : undefined;
  });
  if (outcome.result === 'refused' || outcome.result === 'failed') throw new BatonError('ERR_BATON_RELOAD_FAILED', outcome.message);
  return outcome;
}
