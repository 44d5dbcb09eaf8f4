/**
 * A full disk under the run dir: the upgrade sockets and the pid file live on
 * a small tmpfs that the test fills (every block and every inode), so writing
 * the pid file fails with ENOSPC and so does binding an upgrade socket. Under
 * continuous keep-alive load, a takeover and an exec upgrade each succeed (the
 * new generation reports both files as warnings naming the file and the errno,
 * and serves), then a successor killed right after Ready makes its predecessor
 * roll back on the full disk — it reports the same warnings and serves on.
 * Once the disk has room again the next upgrade writes both files. No request
 * fails.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { probeUnixSocket } from '../src/native/unix-channel.js';
import { freshRequests, loadOn } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, type FixtureEvent } from './helpers/server-process.js';

/** Fills `dir` (a tmpfs): one file takes every free block, empty files every free inode. */
function fill(dir: string): void {
  const isFull = (err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  };
  try {
    const fd = fs.openSync(path.join(dir, 'filler-blocks'), 'a');
    try {
      const chunk = Buffer.alloc(16 * 1024, 1);
      for (;;) fs.writeSync(fd, chunk);
    } catch (err) {
      isFull(err);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    isFull(err);
  }
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(path.join(dir, `filler-${process.hrtime.bigint()}-${i}`), '');
    } catch (err) {
      isFull(err);
      return;
    }
  }
}

/** Empties the filled tmpfs again (the fillers only). */
function unfill(dir: string): void {
  for (const f of fs.readdirSync(dir)) if (f.startsWith('filler-')) fs.rmSync(path.join(dir, f));
}

describe('full disk under the run dir', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it('takeover, exec and a rollback on a full disk: a generation always serves, 0 failed requests', async (t) => {
    const run = tempDir('baton-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,nr_inodes=64,mode=0700', 'tmpfs', run]);
    // At the end of this test, passed or failed; lazily, as a process killed late may still hold a file there.
    t.after(() => {
      killAll(pidsOf(log));
      execFileSync('umount', ['-l', run]);
      fs.rmdirSync(run);
    });
    const pidFile = path.join(run, 'fixture.pid');
    const faults = tempDir('baton-faults-');
    const env = { BATON_SOCKET_DIR: run, PID_FILE: pidFile, BATON_FAULTS: faults, KEEP_ALIVE_TIMEOUT_MS: '300000' };
    const socketPath = path.join(run, 'fixture.sock');
    const warningsOf = (pid: number, since: number) =>
      log.events.slice(since).filter((e) => e.event === 'warning' && e.pid === pid && e.code === 'ERR_BATON_FILE_WRITE_FAILED');
    /** Both files reported, each naming the file and ENOSPC. */
    const assertBothReported = async (pid: number, since: number) => {
      await log.waitFor(() => warningsOf(pid, since).length >= 2, `pid ${pid} reporting both files`, 30_000, since);
      const messages = warningsOf(pid, since).map((e) => String(e.message));
      assert.ok(
        messages.some((m) => m.includes(`could not write ${pidFile}: ENOSPC`)),
        messages.join('\n'),
      );
      assert.ok(
        messages.some((m) => m.startsWith(`could not write ${socketPath}.${pid}.tmp: listen ENOSPC`)),
        messages.join('\n'),
      );
    };

    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(first.pid));
    const origin = `http://127.0.0.1:${listening.http}`;
    const load = await loadOn(t, origin, 16);

    // Takeover on a full disk.
    fill(run);
    let since = log.events.length;
    const second = spawnFixture(fixture('server'), env, log);
    const ready2 = await log.waitFor((e) => e.event === 'ready' && e.pid === second.pid, 'generation 2 ready', 60_000, since);
    assert.equal(ready2.origin, 'takeover');
    await assertBothReported(second.pid!, since);
    await log.waitEvent('exit', first.pid);
    await load.waitForGeneration((g) => g === 2);

    // Exec upgrade on a full disk (the predecessor's exit freed its pid file's inode: fill again).
    fill(run);
    since = log.events.length;
    process.kill(second.pid!, 'SIGUSR2');
    const ready3 = await log.waitFor((e) => e.event === 'ready' && e.generation === 3, 'generation 3 ready', 60_000, since);
    assert.equal(ready3.origin, 'exec');
    await assertBothReported(ready3.pid, since);
    await log.waitEvent('exit', second.pid);
    await load.waitForGeneration((g) => g === 3);

    // A successor dies right after Ready: the predecessor rolls back on the full disk and serves on.
    fill(run);
    since = log.events.length;
    fs.writeFileSync(path.join(faults, 'successor.ready-sent'), 'kill');
    process.kill(ready3.pid, 'SIGUSR2');
    const rolledBack = await log.waitFor(
      (e) => e.event === 'upgrade-failed' && e.pid === ready3.pid && e.code === 'ERR_BATON_SUCCESSOR_LOST',
      'generation 3 rolling back',
      60_000,
      since,
    );
    assert.match(String(rolledBack.message), /rolled back/);
    await assertBothReported(ready3.pid, since);
    assert.deepEqual(
      log.events
        .slice(since)
        .filter((e: FixtureEvent) => e.event === 'phase' && e.pid === ready3.pid)
        .map((e) => (e.args as string[])[0]),
      ['handing-over', 'draining', 'serving'],
    );
    assert.deepEqual(new Set(await freshRequests(origin, 5)), new Set([3]));

    // Room again: the next upgrade publishes its socket and writes its pid file.
    unfill(run);
    since = log.events.length;
    process.kill(ready3.pid, 'SIGUSR2');
    const ready4 = await log.waitFor((e) => e.event === 'ready' && e.generation === 4, 'generation 4 ready', 60_000, since);
    assert.equal(warningsOf(ready4.pid, since).length, 0);
    assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(ready4.pid));
    const found = probeUnixSocket(socketPath);
    assert.equal(found.kind, 'running');
    if (found.kind === 'running') {
      assert.equal(found.channel.peerCredentials().pid, ready4.pid);
      found.channel.close();
    }
    await load.waitForGeneration((g) => g === 4);
    await log.waitEvent('exit', ready3.pid);

    const result = await load.stop();
    assert.equal(result.failed, 0, result.errors.join('; '));
    assert.ok(result.ok > 0);
    process.kill(ready4.pid, 'SIGTERM');
    await log.waitEvent('exit', ready4.pid);
  });
});
