/**
 * A full disk under the run dir (a small tmpfs, filled): pid and state files
 * are best-effort. `baton start`, `baton reload` and `baton upgrade` (USR2,
 * WINCH, QUIT) all go through — the commands find the masters by their control
 * sockets — with a generation serving throughout under
 * keep-alive load and a fresh-connection prober; each failed write is a log
 * record naming the file and the errno. Needs root (mount).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { FreshProber, HttpLoad } from './helpers/http-load.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { cli, next, startMaster, statusOf, writeApp } from './helpers/supervisor.js';

const run = promisify(execFile);

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** Fills the filesystem of `dir` until a write fails with ENOSPC. */
function fill(dir: string): void {
  const chunk = Buffer.alloc(64 * 1024);
  for (const [name, size] of [
    ['fill', chunk],
    ['fill-small', Buffer.alloc(512)],
  ] as const) {
    const fd = fs.openSync(path.join(dir, name), 'w');
    try {
      for (;;) fs.writeSync(fd, size);
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
  }
}

test(
  'full disk under the run dir: start, reload and upgrade serve throughout; each failed write is logged with file and errno',
  {
    skip: process.getuid?.() !== 0 ? 'needs root to mount a tmpfs' : false,
  },
  async (t) => {
    const dir = tempDir('baton-sup-');
    const runDir = path.join(dir, 'run');
    fs.mkdirSync(runDir, { mode: 0o700 });
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', runDir], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, mounted.stderr);
    t.after(() => spawnSync('umount', ['-l', runDir]));
    fill(runDir);

    writeApp(dir, 'v1');
    const cfg = path.join(dir, 'baton.yaml');
    fs.writeFileSync(
      cfg,
      [
        'name: app',
        'app: app.mjs',
        `runDir: ${runDir}`,
        'workers: 2',
        'listeners:',
        '  http: { host: 127.0.0.1, port: 0 }',
        'timeouts: { drainMs: 5000, readyMs: 15000, killGraceMs: 1000 }',
      ].join('\n'),
    );
    const pidFile = path.join(runDir, 'app.pid');

    const old = await startMaster(log, cfg);
    t.after(() => killAll([old.pid]));
    const noPid = await next(log, 'pid file write failure', (e) => e.event === 'file-write-failed' && e.pid === old.pid, 0);
    assert.equal(noPid.file, pidFile);
    assert.equal(noPid.code, 'ENOSPC');
    assert.match(String(noPid.msg), /cannot write the pid file .*app\.pid: ENOSPC.*serving goes on/);

    const origin = `http://127.0.0.1:${old.port}`;
    const load = new HttpLoad(origin, 32);
    t.after(() => load.stop());
    const prober = new FreshProber(origin);
    t.after(() => prober.stop());
    await load.waitForMore(100);

    // The commands find the master by its control socket.
    const status = await run(process.execPath, [cli, 'status', '-c', cfg]);
    assert.match(status.stdout, new RegExp(`master pid ${old.pid} \\(current\\) running`));
    assert.match(status.stderr, new RegExp(`master pid ${old.pid} found by its control socket: the pid file .*app\\.pid does not name it`));

    // baton reload: new workers; the state file cannot be written.
    let mark = log.events.length;
    const reloaded = await run(process.execPath, [cli, 'reload', '-c', cfg]);
    assert.match(reloaded.stdout, /reload done: every worker runs the new code/);
    const noState = await next(log, 'state file failure', (e) => e.event === 'file-write-failed' && e.pid === old.pid, mark);
    assert.equal(noState.code, 'ENOSPC');
    await load.waitForMore(100);

    // baton upgrade (USR2 → WINCH → QUIT): the new master serves without a pid file.
    mark = log.events.length;
    const upgraded = await run(process.execPath, [cli, 'upgrade', '-c', cfg, '--window', '200']);
    const newPid = Number(/master pid \d+ → (\d+)/.exec(upgraded.stdout)?.[1]);
    assert.ok(newPid > 0, upgraded.stdout);
    const newNoPid = await next(log, 'new pid file failure', (e) => e.event === 'file-write-failed' && e.pid === newPid, mark);
    assert.equal(newNoPid.code, 'ENOSPC');
    await waitGone(old.pid, 20_000);
    await load.waitForMore(200);

    const s = await statusOf(runDir, newPid);
    assert.equal(s.phase, 'running');
    assert.equal(s.workers.filter((w) => w.state === 'ready').length, 2);
    assert.equal(fs.existsSync(pidFile), false, 'no pid file could be written');
    const result = await load.stop();
    const probes = await prober.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    assert.equal(probes.failed, 0, `failed fresh connections: ${probes.errors.join('; ')}`);
    assert.ok(probes.ok > 0);
    assert.ok(!log.output.some((l) => /\n?\s+at .*\.js:\d+/.test(l)), 'no stack trace');
    assert.deepEqual(
      fs.readdirSync(runDir).filter((f) => f.endsWith('.tmp')),
      [],
      'no temporary file is left',
    );

    process.kill(newPid, 'SIGQUIT');
    await waitGone(newPid, 20_000);
  },
);
