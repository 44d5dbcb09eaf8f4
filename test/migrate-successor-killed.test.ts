/**
 * A successor killed (SIGKILL) in the middle of a migration: 3,000 idle
 * keep-alive connections leave in batches of 256, and the successor dies right
 * after acknowledging the batch that brought it to 1,000. The predecessor
 * reports how many it had handed over (a warning, then its drain report); those
 * connections died with the successor, and exactly those clients lose theirs.
 * Every other connection stays with the predecessor: it answers its next
 * request (generation 1, no reconnect, 0 failures) with `Connection: close`,
 * and the predecessor then drains and exits normally.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { Client } from 'undici';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const CONNECTIONS = 3000;
const BATCH = 256;
const DIE_AFTER = 1000;
/** The batches the successor acknowledged before dying: it dies on the one reaching DIE_AFTER. */
const HANDED_OVER = Math.ceil(DIE_AFTER / BATCH) * BATCH;

interface Tracked {
  client: Client;
  connects: number;
  disconnects: number;
}

describe('successor killed during migration', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it(`connections not yet handed over stay with the predecessor and keep working`, async () => {
    // A long server keep-alive, so nothing idles out while the test runs (the client honours the server's hint).
    const env = { BATON_SOCKET_DIR: tempDir(), MIGRATE_BATCH_SIZE: String(BATCH), KEEP_ALIVE_TIMEOUT_MS: '300000' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);

    let disconnected = 0;
    let onDisconnect: (() => void) | undefined;
    const clients: Tracked[] = Array.from({ length: CONNECTIONS }, () => {
      const t: Tracked = {
        client: new Client(`http://127.0.0.1:${listening.http}`, {
          keepAliveTimeout: 600_000,
          keepAliveMaxTimeout: 600_000,
          pipelining: 1,
        }),
        connects: 0,
        disconnects: 0,
      };
      t.client.on('connect', () => t.connects++);
      t.client.on('disconnect', () => {
        t.disconnects++;
        disconnected++;
        onDisconnect?.();
      });
      return t;
    });
    const untilDisconnected = (n: number, what: string) =>
      new Promise<void>((resolve, reject) => {
        if (disconnected >= n) return resolve();
        const timer = setTimeout(() => reject(new Error(`${what}: only ${disconnected} of ${n} clients disconnected`)), 30_000);
        onDisconnect = () => {
          if (disconnected < n) return;
          clearTimeout(timer);
          onDisconnect = undefined;
          resolve();
        };
      });
    const get = async (t: Tracked) => {
      const res = await t.client.request({ path: '/', method: 'GET' });
      await res.body.text();
      return { status: res.statusCode, generation: Number(res.headers['x-generation']), connection: res.headers.connection };
    };

    try {
      // Every connection open and idle (between two requests) in generation 1.
      const firstRound = await Promise.all(clients.map(get));
      assert.ok(
        firstRound.every((r) => r.status === 200 && r.generation === 1),
        'first round served by generation 1',
      );
      assert.equal(
        clients.reduce((n, t) => n + t.connects, 0),
        CONNECTIONS,
      );

      const since = log.events.length;
      const successor = spawnFixture(fixture('server'), { ...env, DIE_AFTER_ADOPTING: String(DIE_AFTER) }, log);
      const [, signal] = (await once(successor, 'exit')) as [number | null, NodeJS.Signals | null];
      assert.equal(signal, 'SIGKILL', 'the successor killed itself mid-migration');
      const batchesIn = log.events.slice(since).filter((e) => e.event === 'connections-in' && e.pid === successor.pid);
      const adopted = batchesIn.reduce((n, e) => n + (e.args as { adopted: number }[])[0]!.adopted, 0);
      assert.equal(adopted, HANDED_OVER, `the successor adopted ${adopted} in ${batchesIn.length} batches`);

      // The predecessor says migration stopped and how many connections it had handed over.
      const warning = await log.waitFor(
        (e) => e.event === 'warning' && e.pid === first.pid,
        'the predecessor warning that migration stopped',
        30_000,
        since,
      );
      assert.equal(warning.code, 'ERR_BATON_SUCCESSOR_LOST', String(warning.message));
      assert.match(String(warning.message), new RegExp(`\\b${HANDED_OVER} connections had been handed over`));
      const batchesOut = log.events.filter((e) => e.event === 'connections-out' && e.pid === first.pid);
      assert.equal(
        batchesOut.reduce((n, e) => n + (e.args as { adopted: number }[])[0]!.adopted, 0),
        HANDED_OVER,
      );

      // Exactly the connections handed over died with the successor.
      await untilDisconnected(HANDED_OVER, 'connections lost with the successor');
      const stayed = clients.filter((t) => t.disconnects === 0);
      assert.equal(stayed.length, CONNECTIONS - HANDED_OVER);

      // Each one left with the predecessor answers its next request on the same connection, then closes.
      let failed = 0;
      const errors: string[] = [];
      const replies = await Promise.all(
        stayed.map(async (t) => {
          try {
            return await get(t);
          } catch (err) {
            failed++;
            if (errors.length < 10) errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
            return undefined;
          }
        }),
      );
      assert.equal(failed, 0, `failed requests: ${errors.join('; ')}`);
      assert.ok(
        replies.every((r) => r?.status === 200 && r.generation === 1),
        'answered by generation 1',
      );
      assert.ok(
        replies.every((r) => r?.connection === 'close'),
        'the draining predecessor closes each connection after its response',
      );
      assert.ok(
        stayed.every((t) => t.connects === 1),
        'no client reconnected',
      );

      // Then the predecessor drains and exits by itself; its report counts the handover.
      const drained = await log.waitFor((e) => e.event === 'drained' && e.pid === first.pid, 'the predecessor drained', 30_000, since);
      const report = (drained.args as { connections: number; migrated: number; drained: number; forced: number }[])[0]!;
      assert.deepEqual(
        { connections: report.connections, migrated: report.migrated, drained: report.drained, forced: report.forced },
        { connections: CONNECTIONS, migrated: HANDED_OVER, drained: CONNECTIONS - HANDED_OVER, forced: 0 },
      );
      await log.waitEvent('exit', first.pid);
      await untilDisconnected(CONNECTIONS, 'every connection closed');
    } finally {
      await Promise.all(clients.map((t) => t.client.destroy().catch(() => undefined)));
    }
  });
});
