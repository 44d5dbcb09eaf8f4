/**
 * Rolling a binary upgrade back, both ways nginx allows, under keep-alive
 * load with 0 failed requests: (1) HUP to the old master restarts its workers,
 * QUIT to the new master retires it; (2) TERM to the new master — the old
 * master restarts its workers by itself. And a new master that dies
 * unexpectedly: the old one restores its pid file and restarts its workers.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, killAll, waitGone } from './helpers/server-process.js';
import { masterUnderLoad, next, pidIn, quit, statusOf, type StartedMaster } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** Starts a master with load on it, upgrades it (USR2) and stops the old workers (WINCH). */
async function upgradedAndWinched(t: { after(fn: () => unknown): void }): Promise<{
  dir: string;
  pidFile: string;
  old: StartedMaster;
  newPid: number;
  load: HttpLoad;
}> {
  const { dir, master: old, load } = await masterUnderLoad(t, log, 'workers: 2', 64, 100);
  const pidFile = path.join(dir, 'app.pid');
  let mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const newPid = (await next(log, 'new master ready', (e) => e.event === 'master-ready' && e.pid !== old.pid, mark)).pid;
  mark = log.events.length;
  process.kill(old.pid, 'SIGWINCH');
  await next(log, 'old master standby', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'standby', mark);
  for (const w of (await statusOf(dir, old.pid)).workers) await waitGone(w.pid, 15_000);
  await load.waitForMore(100);
  assert.equal(pidIn(`${pidFile}.oldbin`), old.pid);
  return { dir, pidFile, old, newPid, load };
}

/**
 * The end of every rollback: the load went on without a failed request, the
 * old master is the current one with both its workers serving; it is retired.
 */
async function oldMasterServesAlone(dir: string, old: StartedMaster, load: HttpLoad): Promise<void> {
  await load.waitForMore(200);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  const s = await statusOf(dir, old.pid);
  assert.equal(s.role, 'current');
  assert.equal(s.workers.filter((w) => w.state === 'ready').length, 2);
  await quit(old);
}

describe('rollback of a binary upgrade', () => {
  test('HUP to the old master, then QUIT to the new one: 0 failed requests, the old master owns the pid file again', async (t) => {
    const { dir, pidFile, old, newPid, load } = await upgradedAndWinched(t);
    let mark = log.events.length;
    process.kill(old.pid, 'SIGHUP');
    await next(log, 'old master workers back', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'superseded', mark);
    // Wait until both of the old master's workers serve again.
    let ready = 0;
    while (ready < 2) {
      await next(log, 'old worker ready', (e) => e.event === 'worker-ready' && e.pid === old.pid, mark);
      mark = log.events.findIndex((e, i) => i >= mark && e.event === 'worker-ready' && e.pid === old.pid) + 1;
      ready++;
    }
    await load.waitForMore(100);
    mark = log.events.length;
    process.kill(newPid, 'SIGQUIT');
    await waitGone(newPid, 20_000);
    await next(log, 'old master current again', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'running', mark);
    assert.equal(pidIn(pidFile), old.pid);
    assert.equal(fs.existsSync(`${pidFile}.oldbin`), false);
    await oldMasterServesAlone(dir, old, load);
  });

  test('TERM to the new master: the old master restarts its workers by itself; 0 failed requests', async (t) => {
    const { dir, pidFile, old, newPid, load } = await upgradedAndWinched(t);
    const mark = log.events.length;
    process.kill(newPid, 'SIGTERM');
    await waitGone(newPid, 20_000);
    await next(log, 'old master current again', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'running', mark);
    assert.equal(pidIn(pidFile), old.pid);
    await oldMasterServesAlone(dir, old, load);
  });

  test('the new master killed (SIGKILL): the old master restores its pid file and restarts its workers', async (t) => {
    const { dir, pidFile, old, newPid, load } = await upgradedAndWinched(t);
    const newWorkers = (await statusOf(dir, newPid)).workers.map((w) => w.pid);
    const mark = log.events.length;
    process.kill(newPid, 'SIGKILL');
    await next(log, 'old master current again', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'running', mark);
    assert.equal(pidIn(pidFile), old.pid);
    // The orphaned workers of the killed master drain and exit by themselves.
    for (const w of newWorkers) await waitGone(w, 20_000);
    // Requests in flight on the orphaned workers finish (they drain); every failure is counted.
    await oldMasterServesAlone(dir, old, load);
  });
});
