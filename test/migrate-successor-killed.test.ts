/**
 * A successor killed (SIGKILL) in the middle of a migration: 3,000 idle
 * keep-alive connections leave in batches of 256, and the successor dies right
 * after acknowledging the batch that brought it to 1,000. The predecessor
 * reports how many it had handed over (a warning, then its drain report); those
 * connections died with the successor, and exactly those clients lose theirs.
 * Every other connection stays with the predecessor, which rolls back: with
 * no generation left serving, it accepts again (phase draining → serving),
 * takes the upgrade socket back and answers every kept connection's next
 * request with keep-alive (generation 1, no reconnect, 0 failures). New
 * connections reach it, and a later upgrade works. And a successor killed
 * right after acknowledging the last batch — the drain over, nothing left to
 * cancel — is rolled back from too.
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

/** Waits for `pid`'s rollback after its successor was lost (its 'upgrade-failed' ERR_BATON_SUCCESSOR_LOST) and checks it says so. */
async function rolledBack(log: EventLog, pid: number, since: number): Promise<void> {
  const failed = await log.waitFor(
    (e) => e.event === 'upgrade-failed' && e.pid === pid && e.code === 'ERR_BATON_SUCCESSOR_LOST',
    'the predecessor rolling back',
    30_000,
    since,
  );
  assert.match(String(failed.message), /rolled back/);
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

      // The predecessor rolled back: it serves again instead of draining.
      await rolledBack(log, first.pid!, since);
      assert.deepEqual(
        log.events.filter((e) => e.event === 'phase' && e.pid === first.pid).map((e) => (e.args as string[])[0]),
        ['serving', 'handing-over', 'draining', 'serving'],
      );

      // Each one left with the predecessor answers its next request on the same connection.
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
        replies.every((r) => r?.connection === 'keep-alive'),
        'the rolled-back predecessor keeps each connection open',
      );
      assert.ok(
        stayed.every((t) => t.connects === 1),
        'no client reconnected',
      );

      // New connections reach it (the listening socket never closed), and the next upgrade works.
      const fresh = new Client(`http://127.0.0.1:${listening.http}`);
      const res = await fresh.request({ path: '/', method: 'GET' });
      await res.body.text();
      assert.equal(res.headers['x-generation'], '1');
      await fresh.close();
      const since2 = log.events.length;
      const next = spawnFixture(fixture('server'), { ...env, DIE_AFTER_ADOPTING: '' }, log);
      const ready = await log.waitFor((e) => e.event === 'ready' && e.pid === next.pid, 'the next successor ready', 30_000, since2);
      assert.equal(ready.generation, 2);
      const done = await log.waitFor((e) => e.event === 'predecessor-done' && e.pid === next.pid, 'the predecessor done', 60_000, since2);
      const report = (done.args as { migrated: number; forced: number }[])[0]!;
      assert.equal(report.migrated, CONNECTIONS - HANDED_OVER, 'every kept connection moves at the next upgrade');
      assert.equal(report.forced, 0);
      await log.waitEvent('exit', first.pid);
      // Close the clients first: the server's long keep-alive would hold its stop until the drain timeout.
      await Promise.all(clients.map((t) => t.client.destroy().catch(() => undefined)));
      process.kill(next.pid!, 'SIGTERM');
      await log.waitEvent('exit', next.pid);
    } finally {
      await Promise.all(clients.map((t) => t.client.destroy().catch(() => undefined)));
    }
  });

  it('killed right after acknowledging the last batch, when the drain is already over: the predecessor still rolls back', async () => {
    // Every connection idle: they all leave at the drain's start in one batch, and the successor dies on its ack.
    // The predecessor's drain then has nothing left to cancel; only the closed channel says the successor is gone.
    const IDLE = 20;
    const env = { BATON_SOCKET_DIR: tempDir(), KEEP_ALIVE_TIMEOUT_MS: '300000' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const clients = Array.from(
      { length: IDLE },
      () => new Client(`http://127.0.0.1:${listening.http}`, { keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 }),
    );
    const generationOf = async (c: Client) => {
      const res = await c.request({ path: '/', method: 'GET' });
      await res.body.text();
      return Number(res.headers['x-generation']);
    };
    try {
      assert.deepEqual(new Set(await Promise.all(clients.map(generationOf))), new Set([1]));
      const since = log.events.length;
      const successor = spawnFixture(fixture('server'), { ...env, DIE_AFTER_ADOPTING: String(IDLE) }, log);
      const [, signal] = (await once(successor, 'exit')) as [number | null, NodeJS.Signals | null];
      assert.equal(signal, 'SIGKILL', 'the successor killed itself after its last acknowledgement');
      // The predecessor's lines may still be on their way when the successor's exit is seen: its rollback
      // comes after it logged the acknowledged batch (one process's stdout keeps its order).
      await rolledBack(log, first.pid!, since);
      const out = log.events.slice(since).filter((e) => e.event === 'connections-out' && e.pid === first.pid);
      assert.equal(
        out.reduce((n, e) => n + (e.args as { adopted: number }[])[0]!.adopted, 0),
        IDLE,
        'every connection was handed over: nothing was left to drain',
      );
      assert.equal(
        log.events.slice(since).find((e) => (e.event === 'drained' || e.event === 'exit') && e.pid === first.pid),
        undefined,
        'the predecessor neither reported a finished drain nor exited',
      );
      // It serves: a new connection is answered by generation 1.
      const fresh = new Client(`http://127.0.0.1:${listening.http}`);
      assert.equal(await generationOf(fresh), 1);
      await fresh.close();
    } finally {
      await Promise.all(clients.map((c) => c.destroy().catch(() => undefined)));
    }
  });
});
