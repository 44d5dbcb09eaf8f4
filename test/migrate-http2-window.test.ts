/**
 * A migrated HTTP/2 session keeps its client's real flow-control window even
 * when that window is below the 65 535 a fresh session assumes. A raw client
 * (test/helpers/raw-h2.ts: WINDOW_UPDATEs only when the test says) fetches
 * 32 766 bytes and grants nothing back, so its connection window is 32 769.
 * The session migrates while idle; the new generation's session believes it
 * may send 65 535 bytes. Asked for 256 KiB, it must send no more than the
 * real window — checked when the headers of a later stream arrive, which a
 * server sends after the DATA it had ready — and everything once the client
 * grants more; the body is compared byte by byte.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { DATA, END_STREAM, GOAWAY, HEADERS, RawH2Client } from './helpers/raw-h2.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

const PATTERN = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => i % 251));
const FIRST = 32_766;
const WINDOW_LEFT = 65_535 - FIRST;

describe('HTTP/2 migration with a client window below 65 535', () => {
  const log = new EventLog();
  const clients: RawH2Client[] = [];
  after(() => {
    for (const c of clients) c.socket.destroy();
    killAll(pidsOf(log));
  });

  for (const via of ['takeover', 'exec'] as const) {
    it(`${via}: the new generation sends no more than the client's real window, then everything`, async () => {
      const env = { BATON_SOCKET_DIR: tempDir() };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      const client = new RawH2Client(listening.h2c as number);
      clients.push(client);
      await client.settled();

      const ended = (stream: number) => (f: { type: number; flags: number; stream: number }) =>
        f.stream === stream && (f.type === DATA || f.type === HEADERS) && (f.flags & END_STREAM) !== 0;
      client.get(1, `/bytes/${FIRST}`);
      await client.waitFor(ended(1), 'the end of stream 1');
      assert.equal(client.dataBytes(1), FIRST);

      const next = await upgradeFixture(log, env, via, first.pid!, 2, log.events.length);
      await log.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 'generation 1 exiting', 20_000);

      client.get(3, '/big');
      // DATA of stream 3 up to the window, then the headers of stream 5: sent after whatever DATA was ready.
      await client.waitFor((f) => f.type === DATA && f.stream === 3, 'DATA on stream 3');
      client.get(5, '/bytes/10');
      await client.waitFor((f) => f.type === HEADERS && f.stream === 5, 'the headers of stream 5');
      const sent = client.dataBytes(3);
      assert.ok(sent > 0 && sent <= WINDOW_LEFT, `${sent} bytes of stream 3 before the client granted more; its window was ${WINDOW_LEFT}`);

      client.windowUpdate(0, 1 << 20);
      client.windowUpdate(3, 1 << 20);
      await client.waitFor(ended(3), 'the end of stream 3');
      await client.waitFor(ended(5), 'the end of stream 5');
      const body = Buffer.concat(client.frames.filter((f) => f.type === DATA && f.stream === 3).map((f) => f.payload));
      assert.ok(body.equals(PATTERN), `the 256 KiB body arrived whole (${body.length} bytes)`);
      assert.equal(client.dataBytes(5), 10);
      assert.equal(client.frames.filter((f) => f.type === GOAWAY).length, 0, 'no GOAWAY: the session migrated and lives on');
      assert.equal(client.closed, false);

      client.socket.destroy();
      process.kill(next.pid, 'SIGTERM');
      await log.waitEvent('exit', next.pid);
    });
  }
});
