/**
 * A successor too slow to acknowledge a migration batch (its event loop
 * frozen past `migrateTimeoutMs`): the predecessor lets the batches in flight
 * go — the successor holds those fds and adopts them once it runs again —
 * instead of reading the same connections itself, and keeps every later
 * connection. No connection is read by two processes: every client's next
 * request succeeds, answered by exactly one generation, with no reconnect.
 *
 * Second case: the successor stops reading while a frame is still being
 * written to it (the channel's socket buffer full). That batch can neither go
 * (the successor may never get all of it) nor stay while the rest of the frame
 * may still arrive: at the timeout the predecessor closes the channel, which
 * cancels the rest, and keeps the batch. Raw TCP echo connections with 16 KiB
 * of state each, 100 per batch, make frames of 1.6 MB. Every connection still
 * echoes every byte, none sees an error or a close.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
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

const WRITING_CONNECTIONS = 200;
const WRITING_BATCH = 100;
const WRITING_STATE_BYTES = 16 * 1024;

interface Echoing {
  socket: net.Socket;
  received: string;
  closed: boolean;
}

describe('successor frozen during migration', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));
  /** Generation 1, listening and ready. */
  const startFirst = async (env: Record<string, string>) => {
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    return { first, listening };
  };

  it('the unacknowledged batches go to the successor, later connections stay, nothing is read twice', async () => {
    const env = {
      BATON_SOCKET_DIR: tempDir(),
      MIGRATE_BATCH_SIZE: String(BATCH),
      MIGRATE_TIMEOUT_MS: '400',
      KEEP_ALIVE_TIMEOUT_MS: '300000',
    };
    const { first, listening } = await startFirst(env);
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

  it('the half-written batch stays with the predecessor, the acknowledged one moves, every connection echoes on', async () => {
    const env = {
      BATON_SOCKET_DIR: tempDir(),
      TCP_ECHO: '1',
      ECHO_STATE_BYTES: String(WRITING_STATE_BYTES),
      MIGRATE_BATCH_SIZE: String(WRITING_BATCH),
      MIGRATE_TIMEOUT_MS: '1000',
      DRAIN_TIMEOUT_MS: '120000',
    };
    const { first, listening } = await startFirst(env);
    const port = listening.tcpEcho as number;
    const conns: Echoing[] = await Promise.all(
      Array.from(
        { length: WRITING_CONNECTIONS },
        () =>
          new Promise<Echoing>((resolve, reject) => {
            const socket = net.connect(port, '127.0.0.1', () => resolve(c));
            const c: Echoing = { socket, received: '', closed: false };
            socket.setEncoding('latin1');
            socket.on('data', (d: string) => (c.received += d));
            socket.on('error', reject);
            socket.on('close', () => (c.closed = true));
          }),
      ),
    );
    // Every connection sends a message and gets exactly it back (on 'data', never a poll).
    const roundTrip = (word: string) =>
      Promise.all(
        conns.map(
          (c, i) =>
            new Promise<void>((resolve, reject) => {
              const want = c.received + `${word}-${i};`;
              const settle = (err?: Error) => {
                c.socket.off('data', check).off('close', check);
                if (err) reject(err);
                else resolve();
              };
              const check = () => {
                if (c.received === want) settle();
                else if (c.closed || !want.startsWith(c.received)) settle(new Error(`connection ${i}: got ${c.received.slice(-40)}`));
              };
              c.socket.on('data', check).on('close', check);
              c.socket.write(`${word}-${i};`);
            }),
        ),
      );
    try {
      await roundTrip('before');
      const since = log.events.length;
      const successor = spawnFixture(fixture('server'), { ...env, FREEZE_AFTER_ADOPTING: '1', FREEZE_MS: '3000' }, log);
      const warning = await log.waitFor((e) => e.event === 'warning' && e.pid === first.pid, 'the predecessor timing out', 30_000, since);
      assert.equal(warning.code, 'ERR_BATON_MIGRATION_TIMEOUT', String(warning.message));
      const counts = /(\d+) connections had been handed over.*; (\d+) stay here/.exec(String(warning.message));
      assert.ok(counts, String(warning.message));
      const [handedOver, kept] = [Number(counts[1]), Number(counts[2])];
      assert.doesNotMatch(String(warning.message), /unacknowledged/, 'nothing was let go half-written');
      assert.deepEqual({ handedOver, kept }, { handedOver: WRITING_BATCH, kept: WRITING_CONNECTIONS - WRITING_BATCH });

      // The successor wakes up, adopts only what it acknowledged and drops the cut frame.
      await log.waitFor((e) => e.event === 'freezing' && e.pid === successor.pid, 'the successor freezing', 30_000, since);
      await roundTrip('after');
      const adopted = log.events
        .slice(since)
        .filter((e) => e.event === 'connections-in' && e.pid === successor.pid)
        .reduce((n, e) => n + (e.args as { adopted: number }[])[0]!.adopted, 0);
      assert.equal(adopted, handedOver);
      assert.ok(
        conns.every((c) => !c.closed),
        'no connection closed',
      );
    } finally {
      for (const c of conns) c.socket.destroy();
    }
  });
});
