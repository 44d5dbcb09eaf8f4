/**
 * WebSocket connections (independent `ws` clients) survive upgrades: each
 * client sends a numbered message on a timer and checks the echoes. Across 10
 * upgrades no client sees a close or an error, every sequence comes back
 * complete, in order and without duplicates, and at the end every connection
 * is served by the last generation.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, predecessorDone, upgradeFixture } from './helpers/server-process.js';

const CLIENTS = 1000;
const UPGRADES = 10;
const INTERVAL_MS = 40;

interface Tracked {
  ws: WebSocket;
  sent: number;
  received: number;
  lastGeneration: number;
  problems: string[];
}

describe('WebSocket migration', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it(`${CLIENTS} WebSocket clients survive ${UPGRADES} upgrades with every message in order`, async () => {
    const env = { BATON_SOCKET_DIR: tempDir(), WS: '1' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const url = `ws://127.0.0.1:${listening.http}/ws`;

    const clients: Tracked[] = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => {
        const t: Tracked = { ws: new WebSocket(url, { perMessageDeflate: false }), sent: 0, received: 0, lastGeneration: 0, problems: [] };
        t.ws.on('message', (data) => {
          const [seq, gen] = data.toString().split(' ').map(Number);
          if (seq !== t.received + 1) t.problems.push(`client ${i}: expected echo ${t.received + 1}, got ${seq}`);
          t.received = seq!;
          if (gen! < t.lastGeneration) t.problems.push(`client ${i}: generation went back from ${t.lastGeneration} to ${gen}`);
          t.lastGeneration = gen!;
        });
        t.ws.on('close', (code) => t.problems.push(`client ${i}: closed with ${code}`));
        t.ws.on('error', (err) => t.problems.push(`client ${i}: ${err.message}`));
        return new Promise<Tracked>((resolve, reject) => {
          t.ws.once('open', () => resolve(t));
          t.ws.once('error', reject);
        });
      }),
    );
    // Load, not coordination: every client sends its next number on its own timer.
    const timer = setInterval(() => {
      for (const t of clients) if (t.ws.readyState === WebSocket.OPEN) t.ws.send(String(++t.sent));
    }, INTERVAL_MS);

    let current = first.pid!;
    try {
      for (let g = 2; g <= UPGRADES + 1; g++) {
        const since = log.events.length;
        const ready = await upgradeFixture(log, env, g % 2 === 0 ? 'takeover' : 'exec', current, g, since);
        const report = await predecessorDone(log, ready, since);
        assert.equal(report.forced, 0, `generation ${g - 1} cut connections`);
        assert.ok(report.migrated >= CLIENTS, `generation ${g - 1} migrated only ${report.migrated}`);
        current = ready.pid;
      }
    } finally {
      clearInterval(timer);
    }
    // Every message sent gets its echo: wait for the last ones.
    await Promise.all(
      clients.map(
        (t) =>
          new Promise<void>((resolve) => {
            if (t.received >= t.sent) return resolve();
            const check = () => {
              if (t.received >= t.sent) {
                t.ws.off('message', check);
                resolve();
              }
            };
            t.ws.on('message', check);
          }),
      ),
    );
    const problems = clients.flatMap((t) => t.problems);
    assert.deepEqual(problems.slice(0, 10), []);
    for (const t of clients) {
      assert.equal(t.received, t.sent);
      assert.equal(t.lastGeneration, UPGRADES + 1, 'a connection is not served by the last generation');
    }
    assert.ok(clients.reduce((n, t) => n + t.sent, 0) > CLIENTS * UPGRADES, 'too few messages to mean anything');
    for (const t of clients) t.ws.terminate();
    process.kill(current, 'SIGTERM');
    await log.waitEvent('exit', current);
  });

  it('a WebSocket with permessage-deflate cannot move: it is closed with 1012 and reconnects to the successor', async () => {
    const env = { BATON_SOCKET_DIR: tempDir(), WS: '1', WS_DEFLATE: '1' };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const url = `ws://127.0.0.1:${listening.http}/ws`;
    const N = 20;
    const sockets = await Promise.all(
      Array.from({ length: N }, async () => {
        const ws = new WebSocket(url); // ws clients offer permessage-deflate by default
        await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
        assert.ok(ws.extensions.includes('permessage-deflate'), 'permessage-deflate was not negotiated');
        return ws;
      }),
    );
    const closes = sockets.map((ws) => new Promise<number>((resolve) => ws.once('close', (code) => resolve(code))));
    const since = log.events.length;
    spawnFixture(fixture('server'), env, log);
    const ready = await log.waitFor((e) => e.event === 'ready' && e.generation === 2, 'generation 2 ready', 60_000, since);
    assert.deepEqual(await Promise.all(closes), Array(N).fill(1012));
    const done = await log.waitFor((e) => e.event === 'predecessor-done' && e.pid === ready.pid, 'predecessor done', 60_000, since);
    assert.equal((done.args as { forced: number }[])[0]!.forced, 0);
    // The client reconnects and the successor answers.
    const again = new WebSocket(url);
    const reply = await new Promise<string>((resolve, reject) => {
      again.once('open', () => again.send('1'));
      again.once('message', (d) => resolve(d.toString()));
      again.once('error', reject);
    });
    assert.equal(reply, '1 2');
    again.terminate();
    process.kill(ready.pid, 'SIGTERM');
    await log.waitEvent('exit', ready.pid);
  });
});
