/**
 * nginx's manual binary upgrade, replayed against `baton start` under
 * continuous keep-alive load: USR2 → two masters, pid file and pid.oldbin;
 * WINCH → the old workers exit; QUIT → one master remains. No request fails.
 * Also: a second USR2 during the upgrade is refused with a clear message.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { next, pidIn, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const log = new EventLog();
const pids = new Set<number>();
after(() => killAll([...pids, ...log.events.map((e) => e.pid)]));

test("nginx's binary upgrade sequence (USR2, WINCH, QUIT) under keep-alive load: 0 failed requests", async () => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 2');
  const pidFile = path.join(dir, 'app.pid');
  const old = await startMaster(log, cfg);
  pids.add(old.pid);
  assert.equal(pidIn(pidFile), old.pid);
  const oldWorkers = (await statusOf(dir, old.pid)).workers.map((w) => w.pid);
  assert.equal(oldWorkers.length, 2);

  const load = new HttpLoad(`http://127.0.0.1:${old.port}`, 64);
  after(() => load.stop());
  await load.waitForMore(200);

  // USR2: a new master from the code on disk inherits the listeners.
  let mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const ready = await next(log, 'the new master ready', (e) => e.event === 'master-ready' && e.pid !== old.pid, mark);
  const newPid = ready.pid;
  pids.add(newPid);
  assert.equal(pidIn(pidFile), newPid, 'the new master writes the pid file');
  assert.equal(pidIn(`${pidFile}.oldbin`), old.pid, 'the old pid file becomes .oldbin');
  const oldStatus = await statusOf(dir, old.pid);
  const newStatus = await statusOf(dir, newPid);
  assert.equal(oldStatus.phase, 'superseded');
  assert.equal(oldStatus.childPid, newPid);
  assert.equal(newStatus.parentPid, old.pid);
  assert.deepEqual(
    newStatus.listeners.map((l) => [l.name, l.port, l.origin]),
    [['http', old.port, 'inherited']],
  );
  assert.equal(newStatus.workers.length, 2);
  assert.equal(oldStatus.workers.length, 2, 'both masters serve until WINCH');
  await load.waitForMore(200);

  // A second USR2 while the upgrade is under way is refused.
  mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const refused = await next(log, 'USR2 refused', (e) => e.event === 'usr2-refused' && e.pid === old.pid, mark);
  assert.match(String(refused.msg), /already under way \(new master pid \d+\)/);
  mark = log.events.length;
  process.kill(newPid, 'SIGUSR2');
  const refusedNew = await next(log, 'USR2 refused by the new master', (e) => e.event === 'usr2-refused' && e.pid === newPid, mark);
  assert.match(String(refusedNew.msg), new RegExp(`old master \\(pid ${old.pid}\\) still runs`));

  // WINCH: the old master's workers stop gracefully; the old master stays.
  mark = log.events.length;
  process.kill(old.pid, 'SIGWINCH');
  await next(log, 'old master standby', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'standby', mark);
  for (const w of oldWorkers) await waitGone(w, 15_000);
  const standby = await statusOf(dir, old.pid);
  assert.equal(standby.workers.length, 0);
  assert.equal(standby.phase, 'standby');
  await load.waitForMore(200);

  // QUIT: the old master exits; one master remains and owns the pid file.
  process.kill(old.pid, 'SIGQUIT');
  await new Promise((resolve) => old.child.once('exit', resolve));
  assert.equal(pidIn(pidFile), newPid);
  assert.equal(fs.existsSync(`${pidFile}.oldbin`), false, 'the old master removes its .oldbin');
  await load.waitForMore(200);
  const result = await load.stop();

  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  const finalWorkers = new Set((await statusOf(dir, newPid)).workers.map((w) => w.pid));
  assert.ok([...finalWorkers].every((p) => !oldWorkers.includes(p)));
  const lateResponders = [...result.pids].filter((p) => !oldWorkers.includes(p));
  assert.ok(
    lateResponders.every((p) => finalWorkers.has(p)),
    'every other response came from the new workers',
  );
  const final = await statusOf(dir, newPid);
  assert.equal(final.role, 'current');
  assert.equal(final.counters.upgrades, 1);

  process.kill(newPid, 'SIGQUIT');
  await waitGone(newPid, 15_000);
  assert.equal(fs.existsSync(pidFile), false, 'the last master removes its pid file');
});
