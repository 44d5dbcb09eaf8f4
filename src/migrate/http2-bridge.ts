import type net from 'node:net';
import { Duplex } from 'node:stream';
import { FRAME_HEADER_BYTES, FrameKind, INITIAL_WINDOW, isSettingsAck } from './http2-wire.js';
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
 * A client whose connection window was below the protocol's initial 65 535
 * (Node's own client keeps it between 32 and 64 KiB) leaves a **deficit**: the
 * fresh session believes it may send 65 535 and can only be told more. Until
 * the client's WINDOW_UPDATEs have covered it, the bridge keeps the real
 * window — DATA beyond it waits here, in order, until the client grants more —
 * and takes the deficit out of those WINDOW_UPDATEs before the session sees
 * them, after which both agree and the bridge stops looking.
 *
 * Owns `socket`: destroying either destroys both. `socket` must be paused and
 * not reading (its bytes so far are in `head`).
 */
export class Http2Bridge extends Duplex {
  /** The connection's socket (its fd is what migrates again at the next upgrade). */
  readonly socket: net.Socket;
  /** The synthetic preface's SETTINGS ack was dropped. */
  #ackDropped = false;
  /** Frozen for a migration: the socket reads nothing, whatever the session asks. */
  #frozen = false;
  /** What the session believes the client grants beyond what it does (see the class comment). */
  #deficit: number;
  /** The client's real connection window, kept while there is a deficit. */
  #window: number;
  /** Outbound bytes not looked at yet (a partial frame). */
  #out: Buffer = Buffer.alloc(0);
  /** Outbound frames waiting for the client's window, in order. */
  #held: Buffer[] = [];
  /** Nothing left to look at on the way out. */
  #passThrough = false;
  /** Inbound: the part of a frame header (or of a connection WINDOW_UPDATE) read so far. */
  #inFrame: Buffer = Buffer.alloc(0);
  /** Inbound: payload bytes of the current frame still to pass through. */
  #inSkip = 0;

  /**
   * `head`: what the session reads first (the synthetic preface and whole
   * frames); `rest`: the client's bytes read from the socket already, starting
   * at a frame boundary and possibly ending inside a frame (they go through the
   * same path as the socket's). `window`: the client's connection window when
   * the session starts (below 65 535 makes a deficit).
   */
  constructor(socket: net.Socket, head: Buffer, rest: Buffer, window: number) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    this.#deficit = Math.max(0, INITIAL_WINDOW - window);
    this.#window = window;
    socket.on('data', (chunk: Buffer) => {
      if (!this.#fromClient(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    this.push(head);
    this.#fromClient(rest);
  }

  /** Hands the client's bytes to the session; false when it wants no more for now. */
  #fromClient(chunk: Buffer): boolean {
    if (this.#deficit > 0 || this.#inFrame.length > 0 || this.#inSkip > 0) chunk = this.#inbound(chunk);
    return chunk.length === 0 || this.push(chunk);
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
    if (this.#passThrough) {
      this.socket.write(chunk, done);
      return;
    }
    this.#out = this.#out.length > 0 ? Buffer.concat([this.#out, chunk]) : chunk;
    const data = this.#outbound();
    if (data.length > 0) this.socket.write(data, done);
    else done();
  }

  /**
   * Takes the frames that may go now: everything, except (while there is a
   * deficit) DATA beyond the client's real window — and, to keep each stream's
   * frames in order, every later frame of a stream with a frame held. Frames of
   * other streams and of the connection (PING and SETTINGS acks) pass.
   */
  #outbound(): Buffer {
    const go: Buffer[] = [];
    const frames = this.#held;
    this.#held = [];
    const out = this.#out;
    let at = 0;
    while (at + FRAME_HEADER_BYTES <= out.length) {
      const end = at + FRAME_HEADER_BYTES + out.readUIntBE(at, 3);
      if (end > out.length) break;
      frames.push(out.subarray(at, end));
      at = end;
    }
    this.#out = at === out.length ? Buffer.alloc(0) : Buffer.from(out.subarray(at));
    const blocked = new Set<number>();
    let dataBlocked = false;
    for (const f of frames) {
      const type = f[3]!;
      const stream = f.readUInt32BE(5) & 0x7fff_ffff;
      if (!this.#ackDropped && isSettingsAck({ type, flags: f[4]! })) {
        this.#ackDropped = true;
        continue;
      }
      if (
        this.#deficit > 0 &&
        (blocked.has(stream) || (type === FrameKind.DATA && (dataBlocked || f.length - FRAME_HEADER_BYTES > this.#window)))
      ) {
        this.#held.push(f.length === f.buffer.byteLength ? f : Buffer.from(f)); // waits for the client's WINDOW_UPDATE
        blocked.add(stream);
        if (type === FrameKind.DATA) dataBlocked = true;
        continue;
      }
      if (type === FrameKind.DATA) this.#window -= f.length - FRAME_HEADER_BYTES;
      go.push(f);
    }
    this.#passThrough = this.#ackDropped && this.#deficit === 0 && this.#held.length === 0;
    if (this.#passThrough && this.#out.length > 0) {
      go.push(this.#out);
      this.#out = Buffer.alloc(0);
    }
    return go.length === 1 ? go[0]! : Buffer.concat(go);
  }

  /** Walks inbound frames while there is a deficit, taking it out of connection WINDOW_UPDATEs. */
  #inbound(chunk: Buffer): Buffer {
    const pass: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.#inSkip > 0) {
        const n = Math.min(this.#inSkip, chunk.length - at);
        pass.push(chunk.subarray(at, at + n));
        this.#inSkip -= n;
        at += n;
        continue;
      }
      if (this.#deficit === 0 && this.#inFrame.length === 0) {
        pass.push(chunk.subarray(at)); // at a frame boundary and nothing left to take: pass through from now on
        break;
      }
      const need = this.#inFrame.length < FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + 4;
      const n = Math.min(need - this.#inFrame.length, chunk.length - at);
      this.#inFrame = Buffer.concat([this.#inFrame, chunk.subarray(at, at + n)]);
      at += n;
      if (this.#inFrame.length < need) continue;
      const f = this.#inFrame;
      const windowUpdate = f[3] === FrameKind.WINDOW_UPDATE && f.readUInt32BE(5) === 0 && f.readUIntBE(0, 3) === 4;
      if (windowUpdate && f.length === FRAME_HEADER_BYTES) continue; // read its increment too
      this.#inFrame = Buffer.alloc(0);
      if (!windowUpdate) {
        pass.push(f);
        this.#inSkip = f.readUIntBE(0, 3);
        continue;
      }
      const increment = f.readUInt32BE(FRAME_HEADER_BYTES) & 0x7fff_ffff;
      const taken = Math.min(increment, this.#deficit);
      this.#deficit -= taken;
      this.#window += increment;
      // A WINDOW_UPDATE of 0 is a protocol error: one wholly taken is dropped.
      if (increment > taken) {
        const rewritten = Buffer.from(f);
        rewritten.writeUInt32BE(increment - taken, FRAME_HEADER_BYTES);
        pass.push(rewritten);
      }
      // DATA that waited for this window goes now.
      const data = this.#outbound();
      if (data.length > 0) this.socket.write(data);
    }
    return pass.length === 1 ? pass[0]! : Buffer.concat(pass);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.socket.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy();
    done(err);
  }
}
