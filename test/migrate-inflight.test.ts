/**
 * An HTTP/1.1 request in flight when the drain starts finishes in the
 * predecessor; right after its response the connection moves to the successor
 * (no reconnect), or — with `migrateAfterResponse: false` — the response
 * carries `Connection: close` and the client reconnects to the successor.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Client } from 'undici';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

describe('in-flight HTTP/1.1 requests during a migrating drain', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  for (const afterResponse of [true, false]) {
    it(`migrateAfterResponse ${afterResponse}`, async () => {
      const env = { BATON_SOCKET_DIR: tempDir(), MIGRATE_AFTER_RESPONSE: afterResponse ? '1' : '0' };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      let connects = 0;
      const client = new Client(`http://127.0.0.1:${listening.http}`, { keepAliveTimeout: 600_000 });
      client.on('connect', () => connects++);
      try {
        const since = log.events.length;
        const held = client.request({ path: '/hold', method: 'GET' });
        await log.waitFor((e) => e.event === 'holding-request' && e.pid === first.pid, 'request held', 30_000, since);
        const successor = spawnFixture(fixture('server'), env, log);
        await log.waitFor((e) => e.event === 'upgrade' && e.pid === first.pid, 'drain started', 60_000, since);
        process.kill(first.pid!, 'SIGWINCH');
        const res = await held;
        assert.equal(await res.body.text(), 'held 1\n', 'the in-flight request finishes in the predecessor');
        assert.equal(res.headers.connection, afterResponse ? 'keep-alive' : 'close');
        const next = await client.request({ path: '/', method: 'GET' });
        await next.body.text();
        assert.equal(next.headers['x-generation'], '2');
        assert.equal(connects, afterResponse ? 1 : 2);
        const done = await log.waitFor((e) => e.event === 'predecessor-done' && e.pid === successor.pid, 'predecessor done', 60_000, since);
        assert.equal((done.args as { migrated: number }[])[0]!.migrated, afterResponse ? 1 : 0);
        process.kill(successor.pid!, 'SIGTERM');
        await log.waitEvent('exit', successor.pid);
      } finally {
        await client.close();
      }
    });
  }
});
