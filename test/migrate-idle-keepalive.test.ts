/**
 * Idle HTTP/1.1 keep-alive connections migrate: 256 connections, each used
 * once after every upgrade, never reconnect — every request succeeds on the
 * connection it was already using, served by the new generation.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Client } from 'undici';
import { EventLog, fixture, killAll, pidsOf, predecessorDone, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

const CONNECTIONS = 256;
const UPGRADES = 6;

describe('idle keep-alive migration', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  for (const path of ['takeover', 'exec'] as const) {
    it(`${CONNECTIONS} idle connections survive ${UPGRADES} ${path} upgrades without a reconnect`, async () => {
      // The server's own keepAliveTimeout (Node's 5 s) is not under test: on a loaded machine a
      // round and an upgrade can take longer, and a connection the server closed meanwhile
      // would reconnect instead of migrating.
      const env = { BATON_SOCKET_DIR: tempDir(), KEEP_ALIVE_TIMEOUT_MS: '600000' };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      let connects = 0;
      const clients = Array.from({ length: CONNECTIONS }, () => {
        // A long client keep-alive: the connection must stay the same across upgrades.
        const c = new Client(`http://127.0.0.1:${listening.http}`, {
          keepAliveTimeout: 600_000,
          keepAliveMaxTimeout: 600_000,
          pipelining: 1,
        });
        c.on('connect', () => connects++);
        return c;
      });
      let failed = 0;
      const roundOnEvery = async (expected: number) => {
        const gens = await Promise.all(
          clients.map(async (c) => {
            try {
              const res = await c.request({ path: '/', method: 'GET' });
              await res.body.text();
              return Number(res.headers['x-generation']);
            } catch {
              failed++;
              return -1;
            }
          }),
        );
        assert.equal(failed, 0);
        assert.deepEqual(new Set(gens), new Set([expected]), `responses should all come from generation ${expected}`);
      };
      let current = first.pid!;
      try {
        await roundOnEvery(1);
        assert.equal(connects, CONNECTIONS);
        for (let g = 2; g <= UPGRADES + 1; g++) {
          const since = log.events.length;
          // Every other upgrade comes right after the previous one, before any request:
          // connections adopted and never used since must move again too.
          const untouched = g % 2 === 1;
          const ready = await upgradeFixture(log, env, path, current, g, since);
          // With every connection migrated, the predecessor has nothing to wait for and exits at once.
          const report = await predecessorDone(log, ready, since, 20_000);
          assert.equal(report.migrated, CONNECTIONS, `generation ${g - 1} migrated ${report.migrated} of ${CONNECTIONS}`);
          assert.equal(report.forced, 0);
          current = ready.pid;
          if (!untouched || g === UPGRADES + 1) await roundOnEvery(g);
        }
        assert.equal(connects, CONNECTIONS, 'a client had to reconnect');
      } finally {
        await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      }
      process.kill(current, 'SIGTERM');
      await log.waitEvent('exit', current);
    });
  }
});
