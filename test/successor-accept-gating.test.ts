/**
 * A successor must not take connections from the shared listening socket
 * before it is ready: if it dies before ready, every connection it had
 * accepted would be lost. Under connection churn (every request a new
 * connect), a successor that holds before ready() answers nothing, and killing
 * it with SIGKILL costs no request.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

describe('successor accept gating', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it('a successor that is not ready accepts nothing, and its SIGKILL loses nothing', async () => {
    const env = { BATON_SOCKET_DIR: tempDir() };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const load = new HttpLoad(`http://127.0.0.1:${listening.http}`, 16, '/', { reset: true });
    await load.waitForGeneration((g) => g === 1);

    try {
      const successor = spawnFixture(fixture('server'), { ...env, FIXTURE_MODE: 'hold' }, log);
      await log.waitEvent('holding', successor.pid);
      // While it holds, fresh connections keep arriving; all of them must reach generation 1.
      await load.waitForMore(500);
      assert.equal(load.result.generations.get(2) ?? 0, 0, 'the holding successor answered requests before ready');
      successor.kill('SIGKILL');
      const failed = await log.waitFor((e) => e.event === 'upgrade-failed' && e.pid === first.pid, 'upgrade-failed');
      assert.equal(failed.code, 'ERR_BATON_SUCCESSOR_EXITED');
      await load.waitForMore(200);
      const result = await load.stop();
      assert.equal(result.failed, 0, result.errors.join('; '));
      assert.deepEqual([...result.generations.keys()], [1]);
    } finally {
      await load.stop();
    }
    process.kill(first.pid!, 'SIGTERM');
    await log.waitEvent('exit', first.pid);
  });
});
