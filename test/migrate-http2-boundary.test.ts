/**
 * An h2c session migrates only when its unread bytes start at a frame
 * boundary: bytes nghttp2 already read cannot leave the process, so a frame
 * cut in two would reach the successor as garbage. A hand-written HTTP/2
 * client (raw TCP, frames built byte by byte) makes the cut on purpose: it
 * sends a PING whose first 5 bytes travel with an earlier frame, so the old
 * generation's nghttp2 holds them when the upgrade freezes the session. The
 * client completes that PING only after it saw the fence PING, so the unread
 * bytes start in the middle of a frame. The old generation must notice, read
 * again, answer the client's PING and drain the session with GOAWAY (no
 * error code) — and a client that cuts nothing must migrate on the same
 * connection, untouched.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';
import { ACK, GOAWAY, PING, RawH2Client, SETTINGS, frame, type Received } from './helpers/raw-h2.js';

const isPingAck = (payload: Buffer) => (f: Received) => f.type === PING && (f.flags & ACK) !== 0 && f.payload.equals(payload);

describe('HTTP/2 migration needs a frame boundary', () => {
  const log = new EventLog();
  const clients: RawH2Client[] = [];
  after(() => {
    for (const c of clients) c.socket.destroy();
    killAll(pidsOf(log));
  });

  it('a session whose unread bytes start mid-frame gets GOAWAY and its PING answered; an aligned one migrates', async () => {
    const env = { BATON_SOCKET_DIR: tempDir() };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);

    const cut = new RawH2Client(listening.h2c as number);
    const whole = new RawH2Client(listening.h2c as number);
    clients.push(cut, whole);
    for (const c of [cut, whole]) await c.settled();

    // The reserved bit set in what would be read as a stream id: no valid frame header starts there.
    const split = frame(PING, 0, 0, Buffer.from('ffffffff00000001', 'hex'));
    // 5 bytes of it go with a whole PING, whose ack shows the server read (and nghttp2 holds) them.
    cut.socket.write(Buffer.concat([frame(PING, 0, 0, Buffer.from('beforecu')), split.subarray(0, 5)]));
    await cut.waitFor(isPingAck(Buffer.from('beforecu')), 'the ack of the PING before the cut');
    cut.onPing = (fence) => cut.socket.write(Buffer.concat([split.subarray(5), frame(PING, ACK, 0, fence.payload)]));

    const since = log.events.length;
    await upgradeFixture(log, env, 'takeover', first.pid!, 2, since);

    // The cut session stays with generation 1, reads again, and drains.
    await cut.waitFor(isPingAck(Buffer.from('ffffffff00000001', 'hex')), 'the ack of the PING that was cut');
    const goaway = await cut.waitFor((f) => f.type === GOAWAY, 'a GOAWAY for the session that could not move');
    assert.equal(goaway.payload.readUInt32BE(4), 0, 'GOAWAY with NO_ERROR');

    // The aligned session moved: it answers a PING from generation 2 on the same connection, no GOAWAY.
    await log.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 'generation 1 exiting', 20_000);
    assert.equal(whole.closed, false, 'the migrated connection is open');
    await whole.roundTrip(Buffer.from('aftermig'));
    assert.equal(whole.frames.filter((f) => f.type === GOAWAY).length, 0, 'no GOAWAY for the migrated session');
    // It got the successor's SETTINGS (a fresh session's) and nothing it did not ask for.
    assert.ok(whole.frames.filter((f) => f.type === SETTINGS && !(f.flags & ACK)).length >= 2, 'settings from both generations');
    assert.equal(
      whole.frames.filter((f) => f.type === SETTINGS && f.flags & ACK).length,
      1,
      'exactly one SETTINGS ack: the synthetic preface is not acknowledged to the client',
    );
  });
});

describe("HTTP/2 migration waits for the app's PINGs", () => {
  const log = new EventLog();
  const clients: RawH2Client[] = [];
  after(() => {
    for (const c of clients) c.socket.destroy();
    killAll(pidsOf(log));
  });

  it('a session whose app awaits a PING ack moves only once the ack was read', async () => {
    const env = { BATON_SOCKET_DIR: tempDir() };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const client = new RawH2Client(listening.h2c as number);
    clients.push(client);
    await client.settled();

    const appPing = Buffer.from('app-ping');
    let held: Buffer | undefined;
    let fences = 0;
    client.onPing = (f) => {
      if (f.payload.equals(appPing)) {
        held = f.payload; // the app's ping stays unanswered until a fence comes
        return;
      }
      fences++;
      // Its ack after the fence's: both among the bytes a frozen session has not read.
      client.socket.write(Buffer.concat([frame(PING, ACK, 0, f.payload), ...(held ? [frame(PING, ACK, 0, held)] : [])]));
      held = undefined;
    };
    const ended = (stream: number) => (f: Received) => f.stream === stream && (f.flags & 0x1) !== 0 && (f.type === 0x0 || f.type === 0x1);
    client.get(1, '/app-ping');
    await client.waitFor(ended(1), 'the end of stream 1');
    await client.waitFor((f) => f.type === PING && f.payload.equals(appPing), "the app's PING");

    const next = await upgradeFixture(log, env, 'takeover', first.pid!, 2, log.events.length);
    await log.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 'generation 1 exiting', 20_000);
    assert.ok(fences >= 2, `${fences} fence(s): the first freeze found the app's PING pending and let the session read again`);

    // It moved: the connection lives on and the new generation answers on it.
    client.get(3, '/');
    await client.waitFor(ended(3), 'the end of stream 3');
    assert.equal(client.frames.filter((f) => f.type === GOAWAY).length, 0, 'no GOAWAY');
    assert.equal(client.closed, false);
    client.socket.destroy();
    process.kill(next.pid, 'SIGTERM');
    await log.waitEvent('exit', next.pid);
  });
});
