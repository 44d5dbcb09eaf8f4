/**
 * A hand-written HTTP/2 client over raw TCP, for tests that need control a
 * real client library does not give: frames built byte by byte, cut anywhere,
 * WINDOW_UPDATEs only when the test says so.
 */
import net from 'node:net';
import { encodeFrame as frame } from '../../src/migrate/http2-wire.js';

export { frame };

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const DATA = 0x0;
export const HEADERS = 0x1;
export const SETTINGS = 0x4;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const ACK = 0x1;
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;

export interface Received {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** A raw HTTP/2 client: answers SETTINGS and PINGs (unless told otherwise) and records every frame. */
export class RawH2Client {
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

  /**
   * Sends a GET for `path` on `stream` (odd, increasing). The header block uses
   * literals without indexing only: the server's SETTINGS_HEADER_TABLE_SIZE
   * may be 0.
   */
  get(stream: number, path: string): void {
    const literal = (index: number, value: string) => Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value, 'latin1')]);
    // A dynamic table size update to 0 (0x20) first: the server's SETTINGS_HEADER_TABLE_SIZE is 0, and the first
    // header block after such a change must say so (RFC 7541 §4.2). Then :method GET and :scheme http (static
    // entries 2 and 6), and :authority (1) and :path (4) with literal values.
    const block = Buffer.concat([Buffer.from([0x20, 0x82, 0x86]), literal(1, 'localhost'), literal(4, path)]);
    this.socket.write(frame(HEADERS, END_STREAM | END_HEADERS, stream, block));
  }

  /** DATA payload bytes received on `stream` so far (padding excluded). */
  dataBytes(stream: number): number {
    return this.frames.filter((f) => f.type === DATA && f.stream === stream).reduce((n, f) => n + f.payload.length, 0);
  }

  /** Grants `increment` more bytes on the connection (stream 0) or a stream. */
  windowUpdate(stream: number, increment: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(increment);
    this.socket.write(frame(WINDOW_UPDATE, 0, stream, p));
  }

  /**
   * Resolves once the server acknowledged this client's settings and a PING
   * round trip after that proves it read this client's ack of its own: from
   * then on the session may migrate.
   */
  async settled(): Promise<void> {
    await this.waitFor((f) => f.type === SETTINGS && (f.flags & ACK) !== 0, 'the ack of the client settings');
    await this.roundTrip(Buffer.from('settled!'));
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
