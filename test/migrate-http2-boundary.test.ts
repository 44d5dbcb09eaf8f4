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
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const ACK = 0x1;

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

interface Received {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** A raw HTTP/2 client: answers SETTINGS and PINGs (unless told otherwise) and records every frame. */
class RawH2Client {
  readonly frames: Received[] = [];
  readonly socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #waiters: { pred: (f: Received) => boolean; resolve: (f: Received) => void }[] = [];
  /** Runs instead of the automatic answer to the server's PINGs. */
  onPing: ((f: Received) => void) | undefined;
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => this.#read(d));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
    this.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
  }

  #read(d: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, d]);
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3);
      if (this.#buffer.length < 9 + length) break;
      const f: Received = {
        type: this.#buffer[3]!,
        flags: this.#buffer[4]!,
        stream: this.#buffer.readUInt32BE(5),
        payload: Buffer.from(this.#buffer.subarray(9, 9 + length)),
      };
      this.#buffer = this.#buffer.subarray(9 + length);
      this.frames.push(f);
      if (f.type === SETTINGS && !(f.flags & ACK)) this.socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
      if (f.type === PING && !(f.flags & ACK)) {
        if (this.onPing) this.onPing(f);
        else this.socket.write(frame(PING, ACK, 0, f.payload));
      }
      for (const w of this.#waiters.splice(0)) {
        if (w.pred(f)) w.resolve(f);
        else this.#waiters.push(w);
      }
    }
  }

  /** Resolves with the first frame (already received or to come) matching `pred`. */
  waitFor(pred: (f: Received) => boolean, what: string, ms = 15_000): Promise<Received> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; got types ${this.frames.map((f) => f.type).join(',')}`)),
        ms,
      );
      this.#waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** A PING round trip: proves the server read everything sent before. */
  async roundTrip(payload: Buffer): Promise<void> {
    this.socket.write(frame(PING, 0, 0, payload));
    await this.waitFor(
      (f) => f.type === PING && (f.flags & ACK) !== 0 && f.payload.equals(payload),
      `the ack of ${payload.toString('hex')}`,
    );
  }
}

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
    for (const c of [cut, whole]) {
      await c.waitFor((f) => f.type === SETTINGS && (f.flags & ACK) !== 0, 'the ack of the client settings');
      // The server's settings acknowledged by the client: the session may migrate.
      await c.roundTrip(Buffer.from('warm-up!'));
    }

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
