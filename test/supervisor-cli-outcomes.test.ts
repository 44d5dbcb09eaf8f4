/**
 * The commands report what happened, not what they sent:
 * - `baton reload` waits for the reload's outcome: 0 when every worker runs
 *   the new code, 1 with the master's reason when it was refused (a port in
 *   use) or failed (new workers crash);
 * - `baton upgrade` notices a new master that died after it was ready (killed
 *   right after WINCH, failpoint master.absorbing) at once, instead of waiting
 *   its whole step timeout, and the old master serves again;
 * - absent, stale and unreachable masters are told apart: a live master whose
 *   fds are exhausted, or whose socket the caller may not open (EACCES), is
 *   "cannot be reached" with the reason, never "no master running".
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { freshRequests } from './helpers/http-load.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { cli, masterUnderLoad, quit, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

type Failed = { code: number; stderr: string; stdout: string };
const fails = (p: Promise<unknown>) =>
  p.then(
    () => assert.fail('the command should fail'),
    (e: Failed) => e,
  );

test('baton reload waits for the outcome: done (0), refused for a port in use (1), failed for crashing workers (1)', async (t) => {
  const { cfg, master, load } = await masterUnderLoad(t, log, 'workers: 1', 16, 50);
  const original = fs.readFileSync(cfg, 'utf8');

  const done = await run(process.execPath, [cli, 'reload', '-c', cfg]);
  assert.match(done.stdout, new RegExp(`sent HUP to master pid ${master.pid}\\n`));
  assert.match(done.stdout, /reload done: every worker runs the new code/);

  // A moved listener whose port is taken: the master refuses the whole reload.
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.after(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  fs.writeFileSync(cfg, original.replace('http: { host: 127.0.0.1, port: 0 }', `http: { host: 127.0.0.1, port: ${port} }`));
  const refused = await fails(run(process.execPath, [cli, 'reload', '-c', cfg]));
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /baton: reload refused: .*EADDRINUSE.*the running workers serve on \[ERR_BATON_RELOAD_FAILED\]/);

  // New workers that crash at start: the reload failed, the old worker serves on.
  fs.writeFileSync(cfg, `${original}\nenv: { APP_MODE: crash }\n`);
  const failed = await fails(run(process.execPath, [cli, 'reload', '-c', cfg]));
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /baton: reload: new worker\(s\) 0 failed; the old ones serve on there \[ERR_BATON_RELOAD_FAILED\]/);

  fs.writeFileSync(cfg, original);
  await load.waitForMore(50);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  await quit(master);
});

test('baton upgrade notices a new master that died after ready (killed at WINCH) and the old master serves again', async (t) => {
  const dir = tempDir('baton-sup-');
  const faults = path.join(dir, 'faults');
  fs.mkdirSync(faults);
  writeApp(dir, 'v1');
  // A step timeout (readyMs + drainMs) far longer than the command may take.
  const cfg = writeConfig(
    dir,
    'workers: 2\ntimeouts: { drainMs: 20000, readyMs: 40000, killGraceMs: 1000 }\nupgrade: { healthWindowMs: 200 }',
  );
  const old = await startMaster(log, cfg, [], { BATON_FAULTS: faults });
  t.after(() => killAll([old.pid]));
  fs.writeFileSync(path.join(faults, 'master.absorbing'), 'kill');

  const t0 = Date.now();
  const failed = await fails(run(process.execPath, [cli, 'upgrade', '-c', cfg]));
  const took = Date.now() - t0;
  assert.equal(failed.code, 1);
  assert.match(failed.stdout, /✓ new master pid (\d+) ready/);
  assert.match(
    failed.stderr,
    new RegExp(`the new master \\(pid \\d+\\) died after it was ready; the old master \\(pid ${old.pid}\\) serves again`),
  );
  assert.ok(took < 30_000, `the death was noticed in ${took} ms, not after the 60 s step timeout`);
  assert.ok(
    fs.readdirSync(faults).some((f) => f.startsWith('master.absorbing.fired-')),
    'the new master died at the step',
  );

  const s = await statusOf(dir, old.pid);
  assert.equal(s.phase, 'running');
  assert.equal(s.role, 'current');
  assert.equal(s.workers.filter((w) => w.state === 'ready').length, 2);
  assert.deepEqual(new Set(await freshRequests(`http://127.0.0.1:${old.port}`, 5)).size > 0, true);
  await quit(old);
});

test(
  'absent, stale and unreachable (fds exhausted, EACCES) masters are told apart',
  { skip: process.getuid?.() !== 0 ? 'needs root (prlimit of another process, a second uid)' : false },
  async (t) => {
    const dir = tempDir('baton-sup-');
    writeApp(dir, 'v1');
    const cfg = writeConfig(dir, 'workers: 1');
    const pidFile = path.join(dir, 'app.pid');

    const absent = await fails(run(process.execPath, [cli, 'status', '-c', cfg]));
    assert.equal(absent.code, 3);
    assert.match(absent.stdout, /app: no master running/);
    const absentReload = await fails(run(process.execPath, [cli, 'reload', '-c', cfg]));
    assert.match(absentReload.stderr, /no master runs 'app' \(no pid file .*app\.pid\) \[ERR_BATON_NO_MASTER\]/);

    // A pid file naming a process that is gone.
    const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    fs.writeFileSync(pidFile, gone.stdout);
    const stale = await fails(run(process.execPath, [cli, 'status', '-c', cfg]));
    assert.equal(stale.code, 3);
    assert.match(stale.stderr, /stale: the pid file .*app\.pid names pid \d+, which is not running \(stale pid file\)/);
    fs.rmSync(pidFile);

    const master = await startMaster(log, cfg);
    t.after(() => killAll([master.pid]));

    // The master's fds exhausted: its RLIMIT_NOFILE lowered to its lowest free fd number (a new fd must be below the limit).
    const used = new Set(fs.readdirSync(`/proc/${master.pid}/fd`).map(Number));
    let open = 0;
    while (used.has(open)) open++;
    const limit = /(\d+)\s+(\d+)\s+files/.exec(fs.readFileSync(`/proc/${master.pid}/limits`, 'utf8'));
    assert.ok(limit, 'the master has an fd limit');
    spawnSync('prlimit', [`--pid=${master.pid}`, `--nofile=${open}:${limit[2]}`], { stdio: 'inherit' });
    const exhausted = await fails(run(process.execPath, [cli, 'status', '-c', cfg]));
    assert.equal(exhausted.code, 1);
    assert.doesNotMatch(exhausted.stdout, /no master running/);
    assert.match(
      exhausted.stderr,
      new RegExp(`unreachable: master pid ${master.pid} cannot be reached at .*app-master-${master.pid}\\.sock`),
    );
    const exhaustedReload = await fails(run(process.execPath, [cli, 'reload', '-c', cfg]));
    assert.match(exhaustedReload.stderr, /may be running but cannot be reached: .*\[ERR_BATON_CONTROL\]/);
    spawnSync('prlimit', [`--pid=${master.pid}`, `--nofile=${limit[1]}:${limit[2]}`], { stdio: 'inherit' });
    assert.match(
      (await run(process.execPath, [cli, 'status', '-c', cfg])).stdout,
      new RegExp(`master pid ${master.pid} \\(current\\) running`),
    );

    // Another user: the 0700 run dir keeps it from the socket (EACCES), with a pid file it may read.
    const shared = tempDir('baton-pub-');
    fs.chmodSync(shared, 0o755);
    fs.copyFileSync(pidFile, path.join(shared, 'app.pid'));
    fs.chmodSync(path.join(shared, 'app.pid'), 0o644);
    const denied = spawnSync(
      process.execPath,
      [cli, 'status', '--name', 'app', '--run-dir', dir, '--pid-file', path.join(shared, 'app.pid')],
      {
        encoding: 'utf8',
        uid: 65534,
        gid: 65534,
        cwd: shared,
      },
    );
    // A Node of another line lives under root's home (test-node-lines.sh): uid 65534 cannot run it there.
    const canRun = spawnSync(process.execPath, ['-e', '0'], { uid: 65534, gid: 65534, cwd: shared }).status === 0;
    if (!canRun) t.diagnostic(`EACCES check skipped: uid 65534 cannot run ${process.execPath}`);
    else {
      assert.equal(denied.status, 1, denied.stderr);
      assert.match(denied.stderr, new RegExp(`unreachable: master pid ${master.pid} cannot be reached at .*: connect EACCES`));
      assert.doesNotMatch(denied.stdout, /no master running/);
    }
    await quit(master);
  },
);
