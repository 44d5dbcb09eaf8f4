/**
 * A predecessor frozen (SIGSTOP, armed through the fault-injection seam) right
 * after it read its successor's Ready, before it answered with Draining. The
 * successor's ready() does not wait for ever: after `helloTimeoutMs` it warns
 * (ERR_BATON_PREDECESSOR_LOST), publishes its upgrade socket, writes its pid
 * file and serves alone — it holds the listeners already, so every fresh
 * connection reaches it. When the predecessor runs again it reads the Ready
 * and finishes the handover as usual: its keep-alive connections migrate to
 * the successor, it exits, and no request of the keep-alive load failed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { probeUnixSocket } from '../src/native/unix-channel.js';
import { freshRequests, loadOn } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const HELLO_TIMEOUT_MS = 1000;

describe('predecessor frozen before it answers Ready', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log), 'SIGCONT'));
  after(() => killAll(pidsOf(log)));

  it('the successor serves alone after helloTimeoutMs; the predecessor, resumed, hands over and exits', async (t) => {
    const faults = tempDir('baton-faults-');
    const dir = tempDir();
    const pidFile = path.join(dir, 'fixture.pid');
    const env = {
      BATON_SOCKET_DIR: dir,
      BATON_FAULTS: faults,
      PID_FILE: pidFile,
      HELLO_TIMEOUT_MS: String(HELLO_TIMEOUT_MS),
      KEEP_ALIVE_TIMEOUT_MS: '300000',
    };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const origin = `http://127.0.0.1:${listening.http}`;
    const load = await loadOn(t, origin, 16);
    await load.waitForMore(100);

    const since = log.events.length;
    fs.writeFileSync(path.join(faults, 'predecessor.ready-received'), 'stop');
    const second = spawnFixture(fixture('server'), env, log);
    const warning = await log.waitFor(
      (e) => e.event === 'warning' && e.pid === second.pid && e.code === 'ERR_BATON_PREDECESSOR_LOST',
      'the successor giving up on Draining',
      30_000,
      since,
    );
    assert.match(String(warning.message), new RegExp(`did not answer ready with Draining within ${HELLO_TIMEOUT_MS} ms`));
    assert.ok(fs.existsSync(path.join(faults, `predecessor.ready-received.fired-${first.pid}`)), 'the predecessor froze at that step');
    const ready = await log.waitFor((e) => e.event === 'ready' && e.pid === second.pid, 'the successor ready', 30_000, since);
    assert.equal(ready.generation, 2);
    assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(second.pid));
    const found = probeUnixSocket(path.join(dir, 'fixture.sock'));
    assert.equal(found.kind, 'running');
    if (found.kind === 'running') {
      assert.equal(found.channel.peerCredentials().pid, second.pid, 'the upgrade socket leads to the successor');
      found.channel.close();
    }
    // The predecessor is frozen: every fresh connection reaches the successor.
    assert.deepEqual(new Set(await freshRequests(origin, 5)), new Set([2]));

    process.kill(first.pid!, 'SIGCONT');
    const done = await log.waitFor((e) => e.event === 'predecessor-done' && e.pid === second.pid, 'the handover finishing', 60_000, since);
    assert.equal((done.args as { forced: number }[])[0]!.forced, 0);
    await log.waitEvent('exit', first.pid);
    await load.waitForGeneration((g) => g === 2);
    const result = await load.stop();
    assert.equal(result.failed, 0, result.errors.join('; '));
    assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(second.pid));
    process.kill(second.pid!, 'SIGTERM');
    await log.waitEvent('exit', second.pid);
  });
});
