/**
 * WebSockets of every `ws` mode migrate: two `noServer` WebSocketServers on
 * one http server, routed by path from its 'upgrade' event (ws's README
 * pattern), one of them with `clientTracking: false` — with the library
 * (test/fixtures/server.ts, WS_NOSERVER=1) and zero-code (an unmodified app,
 * test/apps/ws-noserver.mjs, under `baton run` and in `baton start`'s workers). Every client sends a numbered
 * message every 40 ms and checks each reply ("<path>:<message>": the server
 * that had it answers), across 10 upgrades: every reply in order, no close, no
 * error, no connection cut by a drain.
 *
 * Size: CI runs 200 clients (100 per path); BATON_TEST_FULL=1 runs 1000.
 *
 * And connections that cannot migrate — a WebSocket of a server not registered
 * for migration, a protocol baton does not understand after `Upgrade` — are
 * closed gracefully as soon as the successor is ready (1012; a FIN after every
 * echoed byte) instead of being held for the drain timeout and cut; with
 * `closeUpgraded: false` they are held and cut (the contrast).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { AppRunner, appFile } from './helpers/adopt.js';
import { startMaster, writeAppConfig } from './helpers/supervisor.js';
import {
  EventLog,
  fixture,
  killAll,
  pidsOf,
  spawnFixture,
  tempDir,
  predecessorDone,
  upgradeFixture,
  waitGone,
} from './helpers/server-process.js';
import { sized } from './helpers/size.js';
import { EchoClients } from './helpers/ws-echo-clients.js';

const CLIENTS = sized(1000, 200);
const UPGRADES = 10;
const INTERVAL_MS = 40;

/** Half the clients on /a, half on /b; each expects "<path>:<message>" back. */
async function openBothPaths(base: string): Promise<EchoClients[]> {
  return Promise.all(
    ['/a', '/b'].map((path) => EchoClients.open(`${base}${path}`, CLIENTS / 2, { intervalMs: INTERVAL_MS, reply: (m) => `${path}:${m}` })),
  );
}

describe('WebSocket migration in every ws mode', () => {
  const log = new EventLog();
  const apps = new AppRunner(log);
  const masters: number[] = [];
  after(() => {
    killAll(masters);
    killAll(pidsOf(log));
    apps.killAll();
  });

  it(`library: noServer servers on two paths (one with clientTracking: false), ${CLIENTS} clients, ${UPGRADES} upgrades`, async () => {
    const env = { BATON_SOCKET_DIR: tempDir(), WS_NOSERVER: '1' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const clients = await openBothPaths(`ws://127.0.0.1:${listening.http}`);
    let current = first.pid!;
    for (let g = 2; g <= UPGRADES + 1; g++) {
      const since = log.events.length;
      const ready = await upgradeFixture(log, env, g % 2 === 0 ? 'takeover' : 'exec', current, g, since);
      const report = await predecessorDone(log, ready, since);
      assert.equal(report.forced, 0, `generation ${g - 1} cut connections`);
      assert.ok(report.migrated >= CLIENTS, `generation ${g - 1} migrated only ${report.migrated} of ${CLIENTS}`);
      current = ready.pid;
    }
    for (const c of clients) await c.finish();
    assert.ok(clients[0]!.sent + clients[1]!.sent > CLIENTS * UPGRADES, 'too few messages to mean anything');
    for (const c of clients) c.close();
    process.kill(current, 'SIGTERM');
    await log.waitEvent('exit', current);
  });

  it(`zero-code: an unmodified noServer app under baton run, ${CLIENTS} clients, ${UPGRADES} upgrades`, async () => {
    const dir = tempDir('baton-adopt-');
    const first = await apps.run(dir, 'ws-noserver.mjs').ready();
    const clients = await openBothPaths(`ws://127.0.0.1:${apps.portOf(first.pid)}`);
    let pid = first.pid;
    for (let i = 0; i < UPGRADES; i++) {
      const since = log.events.length;
      const old = pid;
      pid = await apps.upgrade(dir, 'ws-noserver.mjs', pid);
      const drained = log.events.slice(since).find((e) => e.event === 'drained' && e.pid === old)!;
      assert.equal(drained.forced, 0, `pid ${old} cut connections`);
      assert.ok((drained.migrated as number) >= CLIENTS, `pid ${old} migrated only ${String(drained.migrated)} of ${CLIENTS}`);
    }
    for (const c of clients) await c.finish();
    for (const c of clients) c.close();
    process.kill(pid, 'SIGTERM');
  });

  it(`zero-code under baton start (2 workers): the same app, ${CLIENTS} clients, ${UPGRADES} reloads`, async () => {
    const dir = tempDir('baton-sup-');
    const { port, cfg } = await writeAppConfig(dir, appFile('ws-noserver.mjs'));
    const master = await startMaster(log, cfg);
    masters.push(master.pid);
    const clients = await openBothPaths(`ws://127.0.0.1:${port}`);
    for (let i = 0; i < UPGRADES; i++) {
      const since = log.events.length;
      process.kill(master.pid, 'SIGHUP');
      await log.waitFor((e) => e.event === 'reload-done' && e.pid === master.pid, `reload ${i + 1} done`, 60_000, since);
    }
    // The old workers are gone well before their drain timeout (30 s): they held no WebSocket.
    const workers = log.events.filter((e) => e.event === 'worker-ready').map((e) => e.workerPid as number);
    assert.equal(workers.length, 2 * (UPGRADES + 1));
    for (const pid of workers.slice(0, -2)) await waitGone(pid, 20_000);
    for (const c of clients) await c.finish();
    for (const c of clients) c.close();
    process.kill(master.pid, 'SIGTERM');
  });

  /** A client of the fixture's `/raw` protocol (every byte echoed). */
  async function rawClient(port: number): Promise<{ socket: net.Socket; received: () => string; ended: Promise<number> }> {
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET /raw HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    let data = '';
    socket.setEncoding('utf8').on('data', (d: string) => (data += d));
    socket.on('error', () => undefined);
    const ended = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
    while (!data.includes('\r\n\r\n')) await once(socket, 'data');
    assert.match(data, /^HTTP\/1.1 101 /);
    data = data.slice(data.indexOf('\r\n\r\n') + 4);
    return { socket, received: () => data, ended };
  }

  it('connections that cannot migrate are closed gracefully once the successor is ready: 1012, or a FIN after every byte', async () => {
    const env = { BATON_SOCKET_DIR: tempDir(), WS_NOSERVER: '1', DRAIN_TIMEOUT_MS: '120000' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const port = listening.http as number;
    const raw = await rawClient(port);
    const unregistered = new WebSocket(`ws://127.0.0.1:${port}/c`);
    await once(unregistered, 'open');
    const closed = new Promise<{ code: number; at: number }>((resolve) =>
      unregistered.once('close', (code) => resolve({ code, at: performance.now() })),
    );
    const migrating = new WebSocket(`ws://127.0.0.1:${port}/a`);
    await once(migrating, 'open');
    const migratingClosed: number[] = [];
    migrating.on('close', (code) => migratingClosed.push(code));
    // Bytes in flight right up to the cutover: the raw client streams until it gets the FIN.
    let sent = '';
    const pump = setInterval(() => {
      if (raw.socket.writable) {
        const chunk = `${sent.length};`;
        sent += chunk;
        raw.socket.write(chunk);
      }
    }, 5);
    const since = log.events.length;
    spawnFixture(fixture('server'), env, log);
    const ready = await log.waitFor((e) => e.event === 'ready' && e.generation === 2, 'generation 2 ready', 60_000, since);
    const readyAt = performance.now();
    const [ws, rawEnd] = await Promise.all([closed, raw.ended]);
    clearInterval(pump);
    assert.equal(ws.code, 1012, 'the unregistered WebSocket is closed with 1012 (Service Restart)');
    assert.ok(ws.at - readyAt < 5_000, `the WebSocket was closed ${Math.round(ws.at - readyAt)} ms after ready`);
    assert.ok(rawEnd - readyAt < 5_000, `the raw connection was closed ${Math.round(rawEnd - readyAt)} ms after ready`);
    // Graceful: every byte the client sent before the FIN came back (the kernel reports an RST otherwise).
    assert.ok(sent.startsWith(raw.received()) && raw.received().length > 0, 'the raw connection lost echoed bytes');
    const done = await log.waitFor((e) => e.event === 'predecessor-done' && e.pid === ready.pid, 'predecessor done', 60_000, since);
    const report = (done.args as { migrated: number; forced: number; durationMs: number }[])[0]!;
    assert.equal(report.forced, 0, 'nothing was cut');
    assert.ok(report.durationMs < 60_000, `the drain took ${Math.round(report.durationMs)} ms: held for its timeout`);
    assert.ok(report.migrated >= 1, 'the registered WebSocket migrated');
    // The registered WebSocket moved alive; the client of the closed one reconnects to the successor.
    const echo = await new Promise<string>((resolve) => {
      migrating.once('message', (d) => resolve(d.toString()));
      migrating.send('still here');
    });
    assert.equal(echo, '/a:still here');
    assert.deepEqual(migratingClosed, []);
    const again = new WebSocket(`ws://127.0.0.1:${port}/c`);
    await once(again, 'open');
    again.send('x');
    const [reply] = (await once(again, 'message')) as [Buffer];
    assert.equal(reply.toString(), '/c:x');
    again.terminate();
    migrating.terminate();
    process.kill(ready.pid, 'SIGTERM');
    await log.waitEvent('exit', ready.pid);
  });

  it('with closeUpgraded: false they are held until the drain timeout and cut (the contrast)', async () => {
    const env = { BATON_SOCKET_DIR: tempDir(), WS_NOSERVER: '1', DRAIN_TIMEOUT_MS: '3000', CLOSE_UPGRADED: '0' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const raw = await rawClient(listening.http as number);
    const since = log.events.length;
    spawnFixture(fixture('server'), env, log);
    const ready = await log.waitFor((e) => e.event === 'ready' && e.generation === 2, 'generation 2 ready', 60_000, since);
    const done = await log.waitFor((e) => e.event === 'predecessor-done' && e.pid === ready.pid, 'predecessor done', 60_000, since);
    const report = (done.args as { forced: number; durationMs: number }[])[0]!;
    assert.equal(report.forced, 1, 'the raw connection was held and cut at the drain timeout');
    assert.ok(report.durationMs >= 3_000);
    await raw.ended;
    process.kill(ready.pid, 'SIGTERM');
    await log.waitEvent('exit', ready.pid);
  });
});
