/**
 * socket.io 4 (engine.io) under upgrades: an unmodified socket.io app (default
 * server settings, and `transports: ['websocket']`) runs under `baton run`;
 * socket.io-client clients each send a numbered message with an ack every
 * 20–50 ms (socket.io's `retries` option: a message not acknowledged is sent
 * again after a reconnect). engine.io's sessions cannot move with their
 * socket, so at each upgrade the old generation answers what it received,
 * closes each session's WebSocket with 1012 and reads nothing more; the client
 * reconnects to the successor at once. Checked per upgrade and per client:
 * every message acknowledged exactly once, in order, and processed by exactly
 * one process (each process logs what it processed); at most one reconnect
 * per client per upgrade, to the new generation; no client stalled more than
 * 2 s; the old generation holds no realtime client 2 s after the successor is
 * ready (no split brain); and a broadcast after each upgrade reaches every
 * client, those connected before the upgrade and one connected after it.
 *
 * Size: CI runs 50 clients per transport setting and 10 upgrades;
 * BATON_TEST_FULL=1 runs 200.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { io, type Socket } from 'socket.io-client';
import { AppRunner } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

const CLIENTS = process.env.BATON_TEST_FULL === '1' ? 200 : 50;
const UPGRADES = 10;
const STALL_MS = 2_000;

interface Client {
  id: string;
  socket: Socket;
  acked: number;
  connects: { at: number }[];
  disconnects: number[];
  broadcasts: Set<string>;
  lastAck: number;
  maxStall: number;
  problems: string[];
  running: boolean;
  loop: Promise<void>;
}

/** Every client opened, closed after the tests whatever happened. */
const everyClient: Socket[] = [];

function open(url: string, id: string, transports: string[] | undefined): Promise<Client> {
  // retries needs ackTimeout (it makes acks error-first); long enough never to resend to a live server.
  const socket = io(url, { retries: 10, ackTimeout: 20_000, ...(transports ? { transports } : {}) });
  everyClient.push(socket);
  const c: Client = {
    id,
    socket,
    acked: 0,
    connects: [],
    disconnects: [],
    broadcasts: new Set(),
    lastAck: 0,
    maxStall: 0,
    problems: [],
    running: true,
    loop: Promise.resolve(),
  };
  socket.on('connect', () => c.connects.push({ at: performance.now() }));
  socket.on('disconnect', () => c.disconnects.push(performance.now()));
  socket.on('broadcast', (tag: string) => c.broadcasts.add(tag));
  return new Promise((resolve) =>
    socket.once('connect', () => {
      c.lastAck = performance.now();
      c.loop = (async () => {
        while (c.running) {
          const n = c.acked + 1;
          const reply = (await socket.emitWithAck('msg', id, n)) as { n: number; pid: number };
          if (reply.n !== n) c.problems.push(`${id}: ack for ${reply.n}, expected ${n}`);
          c.acked = n;
          const now = performance.now();
          c.maxStall = Math.max(c.maxStall, now - c.lastAck);
          await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
          c.lastAck = performance.now();
        }
      })().catch((err: unknown) => void c.problems.push(`${id}: ${(err as Error).message}`));
      resolve(c);
    }),
  );
}

describe('socket.io under baton run', () => {
  const log = new EventLog();
  const apps = new AppRunner(log);
  after(() => {
    for (const s of everyClient) s.disconnect();
    killAll(log.events.filter((e) => e.event === 'ready').map((e) => e.pid));
    apps.killAll();
  });

  for (const transports of [undefined, ['websocket']]) {
    const label = transports ? "transports: ['websocket']" : 'default settings';
    it(`${label}: ${CLIENTS} clients, ${UPGRADES} takeovers, no message or ack lost or duplicated`, async () => {
      const dir = tempDir('baton-sio-');
      const env = transports ? { SIO_TRANSPORTS: transports.join(',') } : {};
      const first = await apps.run(dir, 'socketio.mjs', env).ready();
      const url = `http://127.0.0.1:${apps.portOf(first.pid)}`;
      const prefix = transports ? "ws" : "default";
      const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => open(url, `${prefix}-c${i}`, transports)));
      const late: Client[] = [];
      let pid = first.pid;
      try {
        for (let u = 1; u <= UPGRADES; u++) {
          const since = log.events.length;
          const old = pid;
          const before = new Map(clients.map((c) => [c, c.connects.length]));
          const next = apps.run(dir, 'socketio.mjs', env);
          pid = (await next.ready()).pid;
          const readyAt = performance.now();
          await log.waitFor((e) => e.event === 'drained' && e.pid === old, `pid ${old} drained`, 30_000, since);
          // Every client is back, on the new generation, after at most one reconnect.
          await Promise.all(
            clients.map(async (c) => {
              while (c.connects.length === before.get(c)) await new Promise((r) => setTimeout(r, 20));
            }),
          );
          for (const c of clients) {
            const again = c.connects.length - before.get(c)!;
            assert.equal(again, 1, `${c.id} reconnected ${again} times at upgrade ${u}`);
            const left = c.disconnects[c.disconnects.length - 1]!;
            assert.ok(left - readyAt < STALL_MS, `${c.id} stayed on the old generation ${Math.round(left - readyAt)} ms after ready`);
          }
          // A client connected after the upgrade, and a broadcast that must reach everyone.
          late.push(await open(url, `${prefix}-late${u}`, transports));
          const tag = `after-${u}`;
          const count = (await clients[0]!.socket.emitWithAck('shout', tag)) as number;
          assert.equal(count, clients.length + late.length, `the new generation serves ${count} clients`);
          const everyone = [...clients, ...late];
          while (everyone.some((c) => !c.broadcasts.has(tag))) await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        for (const c of [...clients, ...late]) c.running = false;
      }
      await Promise.all([...clients, ...late].map((c) => c.loop));
      const all = [...clients, ...late];
      assert.deepEqual(
        all.flatMap((c) => c.problems),
        [],
      );
      // Every message processed by exactly one process.
      const processed = new Map<string, number>();
      for (const e of log.events) {
        if (e.event !== 'msg') continue;
        const k = `${String(e.client)}#${String(e.n)}`;
        processed.set(k, (processed.get(k) ?? 0) + 1);
      }
      for (const c of all) {
        for (let n = 1; n <= c.acked; n++) {
          const times = processed.get(`${c.id}#${n}`) ?? 0;
          assert.equal(times, 1, `${c.id} message ${n} was processed ${times} times`);
        }
      }
      const stalled = all.filter((c) => c.maxStall > STALL_MS).map((c) => `${c.id}: ${Math.round(c.maxStall)} ms`);
      assert.deepEqual(stalled, [], 'clients stalled');
      assert.ok(
        clients.every((c) => c.acked > UPGRADES),
        'too few messages to mean anything',
      );
      for (const c of all) c.socket.disconnect();
      process.kill(pid, 'SIGTERM');
    });
  }
});
