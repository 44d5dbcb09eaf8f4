import type net from 'node:net';
import { Duplex } from 'node:stream';
import { FRAME_HEADER_BYTES, isSettingsAck } from './http2-wire.js';
import { resumeReading, stopReading, takeBuffered } from './socket-control.js';

/**
 * The stream a migrated HTTP/2 connection's new session runs on, between
 * Node's http2 and the connection's socket.
 *
 * Why it exists: the fresh session is first fed a synthetic client preface
 * (`head`), and nghttp2 acknowledges the SETTINGS in it — an acknowledgement
 * the client never asked for and would answer with a PROTOCOL_ERROR GOAWAY. So
 * the first SETTINGS ACK the session writes is dropped here; after it every
 * byte passes through untouched. Node runs a session on a non-native stream
 * through its JS stream wrapper; with its writes batched (`_writev`) a
 * migrated session keeps about the throughput of a native one
 * (`npm run bench:http2`).
 *
 * Owns `socket`: destroying either destroys both. `socket` must be paused and
 * not reading (its bytes so far are in `head`).
 */
export class Http2Bridge extends Duplex {
  /** The connection's socket (its fd is what migrates again at the next upgrade). */
  readonly socket: net.Socket;
  #dropped = false;
  /** Frozen for a migration: the socket reads nothing, whatever the session asks. */
  #frozen = false;
  /** Outbound bytes held until a whole frame header is known (before the drop only). */
  #pending: Buffer = Buffer.alloc(0);

  constructor(socket: net.Socket, head: Buffer) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    this.push(head);
  }

  // What apps and Node's http2 read off a session's socket.
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily;
  }
  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }
  get localPort(): number | undefined {
    return this.socket.localPort;
  }
  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, delay?: number): this {
    this.socket.setKeepAlive(enable, delay);
    return this;
  }

  /**
   * Stops reading for a migration: later bytes stay in the kernel, and what the
   * socket had read already goes to the session (so that every byte is either
   * in nghttp2 or in the kernel). Returns false when the socket cannot stop.
   */
  freeze(): boolean {
    if (!stopReading(this.socket)) return false;
    this.#frozen = true;
    const buffered = takeBuffered(this.socket);
    if (buffered) this.push(buffered);
    return true;
  }

  /** Undoes {@link freeze}: the connection stays in this process. */
  thaw(): void {
    this.#frozen = false;
    resumeReading(this.socket);
    this.socket.resume();
  }

  override _read(): void {
    if (!this.#frozen) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#send(chunk, done);
  }

  // Node's JS stream wrapper corks around each batch of the session's writes: one
  // socket write per batch instead of one per frame (it doubles a migrated session's throughput).
  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    this.#send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), done);
  }

  #send(chunk: Buffer, done: (err?: Error | null) => void): void {
    if (this.#dropped) {
      this.socket.write(chunk, done);
      return;
    }
    const out = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    let at = 0;
    const keep: Buffer[] = [];
    while (at + FRAME_HEADER_BYTES <= out.length) {
      const end = at + FRAME_HEADER_BYTES + out.readUIntBE(at, 3);
      if (end > out.length) break;
      if (isSettingsAck({ type: out[at + 3]!, flags: out[at + 4]! })) {
        keep.push(out.subarray(at + FRAME_HEADER_BYTES));
        this.#dropped = true;
        at = out.length;
        break;
      }
      keep.push(out.subarray(at, end));
      at = end;
    }
    this.#pending = this.#dropped ? Buffer.alloc(0) : Buffer.from(out.subarray(at));
    const data = Buffer.concat(keep);
    if (data.length > 0) this.socket.write(data, done);
    else done();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.socket.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy();
    done(err);
  }
}
