/**
 * A new master that dies after WINCH (SIGKILL, manual USR2 → WINCH): the old
 * master restarts its workers and serves on — for good, not until a leftover
 * WINCH timer fires `timeouts.readyMs` later and stops them all — under
 * keep-alive load and a fresh-connection prober, failing no request beyond
 * the ones the killed master's workers held. Every exit of the master is
 * logged with its reason.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { FreshProber } from './helpers/http-load.js';
import { EventLog, killAll, waitGone } from './helpers/server-process.js';
import { masterUnderLoad, next, quit, statusOf } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

const readyMs = 4_000;

test('new master SIGKILLed after WINCH: the old master serves on past timeouts.readyMs, nothing lost beyond what the dead master held', async (t) => {
  const {
    dir,
    master: old,
    load,
  } = await masterUnderLoad(t, log, `workers: 2\ntimeouts: { drainMs: 5000, readyMs: ${readyMs}, killGraceMs: 1000 }`, 32, 100);
  const prober = new FreshProber(`http://127.0.0.1:${old.port}`);
  t.after(() => prober.stop());
  const oldWorkers = (await statusOf(dir, old.pid)).workers.map((w) => w.pid);

  let mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const newPid = (await next(log, 'new master ready', (e) => e.event === 'master-ready' && e.pid !== old.pid, mark)).pid;
  mark = log.events.length;
  process.kill(old.pid, 'SIGWINCH');
  await next(log, 'the new master absorbing', (e) => e.event === 'absorbing' && e.pid === newPid, mark);
  for (const w of oldWorkers) await waitGone(w, 20_000);
  await load.waitForMore(100);

  // What the new master's workers hold when it dies: the most that may fail.
  const held = (await statusOf(dir, newPid)).workers.reduce((n, w) => n + (w.connections ?? 0), 0);
  const failedBefore = load.result.failed + prober.failed;
  mark = log.events.length;
  process.kill(newPid, 'SIGKILL');
  const killedAt = Date.now();
  await next(log, 'the old master notices', (e) => e.event === 'child-master-exited' && e.pid === old.pid, mark);
  await next(log, 'the old master running', (e) => e.event === 'master-phase' && e.pid === old.pid && e.phase === 'running', mark);
  const since = mark;
  await log.waitFor(
    () => log.events.slice(since).filter((e) => e.event === 'worker-ready' && e.pid === old.pid).length >= 2,
    "the old master's 2 workers ready again",
    30_000,
  );

  // Serve past the WINCH fallback's deadline (readyMs after WINCH) with margin; the old master must not exit meanwhile.
  const oldExit = new Promise<never>((_, reject) =>
    old.child.once('exit', (code, sig) => reject(new Error(`the old master exited (code ${code}, signal ${sig}): total outage`))),
  );
  oldExit.catch(() => undefined);
  while (Date.now() < killedAt + readyMs + 2_000) await Promise.race([load.waitForMore(50), oldExit]);
  const probed = prober.ok;
  while (prober.ok <= probed) await Promise.race([load.waitForMore(20), oldExit]);

  assert.equal(old.child.exitCode, null, 'the old master runs');
  assert.equal(old.child.signalCode, null, 'the old master runs');
  const s = await statusOf(dir, old.pid);
  assert.equal(s.phase, 'running');
  assert.equal(s.role, 'current');
  assert.equal(s.workers.filter((w) => w.state === 'ready').length, 2, "the old master's workers serve");
  assert.ok(!log.events.some((e) => e.pid === old.pid && /^master-exit/.test(e.event)), 'the old master did not exit');

  const result = await load.stop();
  const probes = await prober.stop();
  const failed = result.failed + probes.failed - failedBefore;
  assert.ok(
    failed <= held,
    `${failed} failed requests, more than the ${held} connections the dead master's workers held: ${[...result.errors, ...probes.errors].join('; ')}`,
  );
  assert.ok(probes.ok > 0);

  await quit(old);
  const exited = log.events.find((e) => e.event === 'master-exited' && e.pid === old.pid);
  assert.equal(exited?.reason, 'QUIT', 'the exit is logged with its reason');
});
