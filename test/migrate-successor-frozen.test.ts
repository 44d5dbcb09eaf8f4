/**
 * A successor too slow to acknowledge a migration batch (its event loop
 * frozen past `migrateTimeoutMs`): the predecessor lets the batches in flight
 * go — the successor holds those fds and adopts them once it runs again —
 * instead of reading the same connections itself, and keeps every later
 * connection. No
 * connection is read by two processes: every client's next request succeeds,
 * answered by exactly one generation, with no reconnect.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Client } from 'undici';
import { MIGRATE_BATCHES_IN_FLIGHT } from '../src/migrate/emigration.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const CONNECTIONS = 1000;
const BATCH = 20;
/**
 * The successor acknowledges the first batch, then freezes; by then the
 * predecessor has sent as many batches as may be in flight (the window moved
 * on by one with that acknowledgement): all of those are let go.
 */
const UNACKNOWLEDGED = MIGRATE_BATCHES_IN_FLIGHT * BATCH;

describe('successor frozen during migration', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it('the unacknowledged batches go to the successor, later connections stay, nothing is read twice', async () => {
    const env = {
      BATON_SOCKET_DIR: tempDir(),
      MIGRATE_BATCH_SIZE: String(BATCH),
      MIGRATE_TIMEOUT_MS: '400',
      KEEP_ALIVE_TIMEOUT_MS: '300000',
    };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    let connects = 0;
    const clients = Array.from({ length: CONNECTIONS }, () => {
      const c = new Client(`http://127.0.0.1:${listening.http}`, { keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 });
      c.on('connect', () => connects++);
      return c;
    });
    const get = async (c: Client) => {
      const res = await c.request({ path: '/', method: 'GET' });
      await res.body.text();
      return Number(res.headers['x-generation']);
    };
    try {
      assert.deepEqual(new Set(await Promise.all(clients.map(get))), new Set([1]));
      const since = log.events.length;
      const successor = spawnFixture(fixture('server'), { ...env, FREEZE_AFTER_ADOPTING: String(BATCH), FREEZE_MS: '1500' }, log);
      const warning = await log.waitFor((e) => e.event === 'warning' && e.pid === first.pid, 'the predecessor timing out', 30_000, since);
      assert.equal(warning.code, 'ERR_BATON_MIGRATION_TIMEOUT', String(warning.message));
      assert.match(
        String(warning.message),
        new RegExp(`${BATCH} connections had been handed over, ${UNACKNOWLEDGED} more left with it unacknowledged`),
      );
      // Once it runs again, the successor adopts the batches it was sent.
      let adopted = 0;
      await log.waitFor(
        (e) => {
          if (e.event !== 'connections-in' || e.pid !== successor.pid) return false;
          adopted += (e.args as { adopted: number }[])[0]!.adopted;
          return adopted >= BATCH + UNACKNOWLEDGED;
        },
        'the successor adopting the late batches',
        30_000,
        since,
      );
      assert.equal(adopted, BATCH + UNACKNOWLEDGED);

      let failed = 0;
      const generations = await Promise.all(clients.map((c) => get(c).catch(() => (failed++, -1))));
      assert.equal(failed, 0);
      assert.equal(
        generations.filter((g) => g === 2).length,
        BATCH + UNACKNOWLEDGED,
        'the adopted connections are served by the successor',
      );
      assert.equal(generations.filter((g) => g === 1).length, CONNECTIONS - BATCH - UNACKNOWLEDGED, 'the rest stayed with the predecessor');
      assert.equal(connects, CONNECTIONS, 'no client reconnected');
    } finally {
      await Promise.all(clients.map((c) => c.destroy().catch(() => undefined)));
    }
    const successorPid = log.events.find((e) => e.event === 'ready' && e.generation === 2)!.pid;
    await log.waitEvent('exit', first.pid);
    process.kill(successorPid, 'SIGTERM');
    await log.waitEvent('exit', successorPid);
  });
});
