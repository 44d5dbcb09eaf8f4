/**
 * What the `baton` commands do to running masters: find them (pid file and
 * `<pid file>.oldbin`), signal them, ask their status, and run the whole
 * binary upgrade and rollback sequences with checks between the steps.
 */
import { readPidFile } from '../core/atomic-file.js';
import { alive } from '../core/proc.js';
import { BatonError } from '../core/errors.js';
import { loadConfig, type Config, type ConfigOverrides } from '../supervisor/config.js';
import { controlRequest, controlSocketPath } from '../supervisor/control.js';
import type { MasterStatus } from '../supervisor/master.js';

/** How to find the masters: the same config file and overrides as `baton start`. */
export interface Target {
  configFile: string | undefined;
  overrides: ConfigOverrides;
}

/** Where the masters of a target are. */
export interface Located {
  config: Config;
  /** The pid in the pid file, if a master answers for it. */
  current: number | undefined;
  /** The pid in `<pid file>.oldbin` (an old master during an upgrade), if it answers. */
  old: number | undefined;
}

/** Output of the long-running commands. */
export type Progress = (line: string) => void;

const POLL_MS = 50;

/** Reads the config (no app needed) and finds the masters that answer. */
export async function locate(target: Target): Promise<Located> {
  const config = loadConfig(target.configFile, target.overrides, process.cwd(), { requireApp: false });
  const answers = async (pid: number | undefined) => (pid !== undefined && (await tryStatus(config, pid)) ? pid : undefined);
  return {
    config,
    current: await answers(readPidFile(config.pidFile)),
    old: await answers(readPidFile(`${config.pidFile}.oldbin`)),
  };
}

/** The status of master `pid`, or undefined when it does not answer. */
export async function tryStatus(config: Config, pid: number): Promise<MasterStatus | undefined> {
  try {
    return (await controlRequest(controlSocketPath(config.runDir, config.name, pid), { cmd: 'status' }, 3_000)) as MasterStatus;
  } catch {
    return undefined;
  }
}

/** The current master's pid, or ERR_BATON_NO_MASTER. */
export function requireCurrent(l: Located): number {
  if (l.current === undefined) {
    throw new BatonError('ERR_BATON_NO_MASTER', `no master runs '${l.config.name}' (pid file ${l.config.pidFile})`);
  }
  return l.current;
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
  let mark = t0;
  const step = (name: string) => {
    const now = performance.now();
    steps.push({ step: name, ms: Math.round(now - mark) });
    progress(`  ✓ ${name} (${Math.round(now - mark)} ms)`);
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

  progress(`upgrading '${config.name}': old master pid ${oldPid}`);
  const before = await tryStatus(config, oldPid);
  signal(oldPid, 'SIGUSR2');
  // The new master writes the pid file once its workers serve; the old one
  // goes back to `running` if the new one died first.
  const newPid = await waitUntil('the new master', stepTimeout, async () => {
    const pid = readPidFile(config.pidFile);
    if (pid !== undefined && pid !== oldPid) {
      const s = await tryStatus(config, pid);
      if (s && s.phase === 'running' && serving(s)) return pid;
    }
    // A failed or refused upgrade leaves the old master running with a new lastError.
    const old = await tryStatus(config, oldPid);
    if (old && old.phase === 'running' && old.lastError !== before?.lastError) {
      throw new BatonError(
        'ERR_BATON_UPGRADE_FAILED',
        `the new master did not come up: ${old.lastError ?? 'unknown reason'}; the old master serves on`,
      );
    }
    return undefined;
  });
  step(`new master pid ${newPid} ready`);

  const healthy = await healthWindow(config, newPid, window, healthUrl);
  if (healthy !== true) {
    progress(`  ✗ health check failed: ${healthy}; rolling back`);
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
    return s.phase === 'standby' && s.workers.length === 0 ? s : undefined;
  });
  step('old workers drained');
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
