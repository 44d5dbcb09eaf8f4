/**
 * `baton upgrade`: the whole USR2 → ready → health window → WINCH → QUIT
 * sequence in one command, under keep-alive load with 0 failed requests,
 * printing each step and a summary; and its automatic rollback when the new
 * generation does not come up (the old master serves on, pid file restored).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { EventLog, killAll, waitGone } from './helpers/server-process.js';
import { cli, masterUnderLoad, pidIn, quit, statusOf, writeApp } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

test('baton upgrade under keep-alive load: every step shown, a summary, 0 failed requests, one master left', async (t) => {
  const { dir, cfg, master: old, load } = await masterUnderLoad(t, log, 'workers: 2\nupgrade: { healthWindowMs: 300 }');
  writeApp(dir, 'v2');
  const { stdout } = await run(process.execPath, [cli, 'upgrade', '-c', cfg]);
  assert.match(stdout, new RegExp(`upgrading 'app': old master pid ${old.pid}`));
  assert.match(stdout, /✓ new master pid \d+ ready/);
  assert.match(stdout, /✓ healthy for 300 ms/);
  assert.match(stdout, /✓ old workers drained/);
  assert.match(stdout, new RegExp(`✓ old master pid ${old.pid} exited`));
  const summary =
    /upgrade done in \d+ ms: master pid (\d+) → (\d+); old workers' connections: \d+ migrated, \d+ closed cleanly, 0 cut \(requests failed server-side: at most 0\)/.exec(
      stdout,
    );
  assert.ok(summary, stdout);
  const newPid = Number(summary[2]);
  await new Promise((r) => (old.child.exitCode !== null ? r(undefined) : old.child.once('exit', r)));
  assert.equal(pidIn(path.join(dir, 'app.pid')), newPid);
  await load.waitForMore(200);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  const s = await statusOf(dir, newPid);
  assert.equal(s.role, 'current');
  assert.equal(s.workers.length, 2);
  process.kill(newPid, 'SIGQUIT');
  await waitGone(newPid, 15_000);
});

test('baton upgrade rolls back when the new generation crashes: the old master serves on', async (t) => {
  const restart = 'restart: { initialDelayMs: 20, maxDelayMs: 100, crashLoopCount: 3 }';
  const { dir, cfg, master: old, load } = await masterUnderLoad(t, log, `workers: 2\n${restart}`, 32, 100);
  const oldWorkers = (await statusOf(dir, old.pid)).workers.map((w) => w.pid).sort();
  // The next generation's config makes its app crash at start.
  fs.writeFileSync(cfg, `${fs.readFileSync(cfg, 'utf8')}\nenv: { APP_MODE: crash }\n`);
  const failed = await run(process.execPath, [cli, 'upgrade', '-c', cfg]).then(
    () => assert.fail('the upgrade should fail'),
    (e: { code: number; stderr: string; stdout: string }) => e,
  );
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /the new master did not come up: .*ERR_BATON_UPGRADE_FAILED/);
  assert.equal(pidIn(path.join(dir, 'app.pid')), old.pid, 'the old master took its pid file back');
  assert.equal(fs.existsSync(path.join(dir, 'app.pid.oldbin')), false);
  const s = await statusOf(dir, old.pid);
  assert.equal(s.phase, 'running');
  assert.deepEqual(s.workers.map((w) => w.pid).sort(), oldWorkers, 'the old workers were never touched');
  await load.waitForMore(100);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  await quit(old);
});

test('baton upgrade --keep-old, then baton rollback; a failed health check rolls back by itself; state outlives the master', async (t) => {
  const { dir, cfg, master: old, load } = await masterUnderLoad(t, log, 'workers: 1\nupgrade: { healthWindowMs: 200 }', 16, 50);
  const mark = log.events.length;
  process.kill(old.pid, 'SIGHUP');
  await log.waitFor((e) => e.event === 'reload-done' && e.pid === old.pid, 'reload', 30_000, mark);

  // A health URL that never answers: the new master is rolled back (TERM), the old one serves on.
  const bad = await run(process.execPath, [cli, 'upgrade', '-c', cfg, '--health-url', 'http://127.0.0.1:1/']).then(
    () => assert.fail('the upgrade should fail'),
    (e: { code: number; stderr: string; stdout: string }) => e,
  );
  assert.match(bad.stdout, /✗ health check failed: http:\/\/127\.0\.0\.1:1\/: .*; rolling back/);
  assert.match(bad.stderr, new RegExp(`failed its health check .*rolled back to master pid ${old.pid}.*ERR_BATON_UPGRADE_FAILED`));
  await log.waitFor(
    (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'running' && e.from === 'superseded',
    'old master current',
    30_000,
    mark,
  );
  assert.equal(pidIn(path.join(dir, 'app.pid')), old.pid);

  // --keep-old stops before QUIT; rollback brings the old master back.
  const kept = await run(process.execPath, [cli, 'upgrade', '-c', cfg, '--keep-old']);
  assert.match(kept.stdout, new RegExp(`old master pid ${old.pid} kept in standby`));
  assert.equal((await statusOf(dir, old.pid)).phase, 'standby');
  const newPid = pidIn(path.join(dir, 'app.pid'))!;
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'app.state.json'), 'utf8')) as {
    masterPid: number;
    counters: { reloads: number };
  };
  assert.equal(state.masterPid, newPid, 'the new master writes the state file');
  assert.equal((await statusOf(dir, newPid)).counters.reloads, 1, "the new master read the old one's counters");
  const back = await run(process.execPath, [cli, 'rollback', '-c', cfg]);
  assert.match(back.stdout, new RegExp(`rolled back: master pid ${old.pid} serves, pid ${newPid} retired`));
  assert.equal(pidIn(path.join(dir, 'app.pid')), old.pid);
  await load.waitForMore(50);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  await quit(old);
});
