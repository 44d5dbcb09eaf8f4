import { BatonError, ErrorCodes, asError, isBatonError, type ErrorCode } from '../core/errors.js';
import { Defaults } from '../core/options.js';
import { closeQuietly } from '../native/socket-info.js';
import type { UnixChannel } from '../native/unix-channel.js';
import {
  FrameDecoder,
  FrameType,
  encodeFrame,
  frameTypeName,
  type DecodedFrame,
  type ErrorPayload,
  type Frame,
  type PingPayload,
} from './frames.js';
import { checkPayload } from './payloads.js';

/** How a {@link FramePeer.ping} ended. */
export type PingOutcome = 'pong' | 'timeout' | 'closed';

/**
 * One end of the handover protocol: frames over a {@link UnixChannel}.
 *
 * Every received frame is checked as it is decoded: its payload against the
 * schema of its type (src/protocol/payloads.ts), its fds against what it
 * declares; a frame that fails fails the peer (receive rejects with
 * ERR_BATON_BAD_FRAME) and its fds are closed at once. Until the first Hello
 * frame arrived, frames larger than `preAuthFrameBytes` are refused from their
 * header: a peer that has not introduced itself cannot make this process
 * buffer megabytes.
 *
 * The peer owns the channel and closes it in {@link FramePeer.close}. Fds of
 * received frames belong to whoever takes the frame from {@link FramePeer.receive};
 * frames never taken are closed with the peer.
 *
 * Ping and Pong frames (feature `ping`) never reach {@link FramePeer.receive}:
 * a Ping is answered with a Pong as soon as it is read, a Pong settles the
 * {@link FramePeer.ping} that asked for it.
 */
export class FramePeer {
  readonly channel: UnixChannel;
  /** Names the other side in messages, e.g. `successor pid 1234`. */
  label: string;
  readonly #maxFrameBytes: number;
  readonly #decoder: FrameDecoder;
  readonly #queue: DecodedFrame[] = [];
  #waiter: { resolve: (f: DecodedFrame) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;
  #closed = false;
  #nextPing = 1;
  readonly #pings = new Map<number, (outcome: PingOutcome) => void>();

  constructor(channel: UnixChannel, options: { maxFrameBytes: number; label: string; preAuthFrameBytes?: number }) {
    this.channel = channel;
    this.label = options.label;
    this.#maxFrameBytes = options.maxFrameBytes;
    const preAuth = Math.min(options.preAuthFrameBytes ?? Defaults.preAuthFrameBytes, options.maxFrameBytes);
    this.#decoder = new FrameDecoder({ maxBytes: options.maxFrameBytes, preAuthBytes: preAuth, closeFd: closeQuietly });
    channel.on('data', (chunk: Buffer, fds: number[]) => this.#onData(chunk, fds));
    channel.on('end', () => this.#fail(new BatonError('ERR_BATON_CHANNEL_CLOSED', `${this.label} closed the upgrade channel`)));
    channel.on('error', (err: Error) => this.#fail(err));
  }

  /** True once closed or failed. */
  get closed(): boolean {
    return this.#closed || this.#failure !== undefined;
  }

  /** Sends one frame with `fds` attached; the caller keeps ownership of its fds. */
  async send(type: FrameType, payload: unknown, fds: readonly number[] = []): Promise<void> {
    const frame = encodeFrame(type, payload, fds.length, this.#maxFrameBytes);
    await this.channel.write(frame, fds);
  }

  /**
   * Resolves with the next frame, its payload decoded (a check of `type`
   * narrows it). Rejects when the channel closes or fails, when the peer sends
   * an Error frame (as a BatonError with the peer's code), or after
   * `timeoutMs` with `onTimeout()`'s error (default ERR_BATON_PEER_TIMEOUT).
   */
  receive(timeoutMs?: number, onTimeout?: () => Error): Promise<DecodedFrame> {
    const next = this.#queue.shift();
    if (next) return settleFrame(next, this.label);
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#waiter) return Promise.reject(new Error('FramePeer.receive() called while another receive is pending'));
    return new Promise<DecodedFrame>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        this.#waiter = undefined;
      };
      this.#waiter = {
        resolve: (f) => {
          done();
          settleFrame(f, this.label).then(resolve, reject);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const err = onTimeout?.() ?? new BatonError('ERR_BATON_PEER_TIMEOUT', `${this.label} sent nothing in ${timeoutMs} ms`);
          this.#waiter?.reject(err);
        }, timeoutMs);
      }
    });
  }

  /**
   * Sends a Ping (only to a peer whose Hello named feature `ping`) and
   * resolves with `'pong'` when its Pong arrives within `timeoutMs`,
   * `'timeout'` when it does not, `'closed'` when the channel closes or fails
   * first. Never rejects.
   */
  ping(timeoutMs: number): Promise<PingOutcome> {
    if (this.closed) return Promise.resolve('closed');
    const seq = this.#nextPing++;
    return new Promise((resolve) => {
      // The verdict waits for the next check phase: after a long pause of this
      // process's event loop the timer fires before the poll phase reads a
      // Pong that arrived in time.
      const timer = setTimeout(() => setImmediate(() => settle('timeout')), timeoutMs);
      let settled = false;
      const settle = (outcome: PingOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pings.delete(seq);
        resolve(outcome);
      };
      this.#pings.set(seq, settle);
      this.send(FrameType.Ping, { seq } satisfies PingPayload).catch(() => settle('closed'));
    });
  }

  /** Receives the next frame and checks its type; an unexpected type is an error (its fds are closed). */
  async expect<T extends FrameType>(type: T, timeoutMs?: number, onTimeout?: () => Error): Promise<DecodedFrame<T>> {
    const frame = await this.receive(timeoutMs, onTimeout);
    if (!isFrameOf(frame, type)) {
      for (const fd of frame.fds) closeQuietly(fd);
      throw new BatonError(
        'ERR_BATON_UNEXPECTED_FRAME',
        `${this.label} sent a ${frameTypeName(frame.type)} frame where a ${frameTypeName(type)} frame was expected`,
      );
    }
    return frame;
  }

  /** Tells the peer why we give up (best effort), then closes. Never throws. */
  async fail(err: BatonError): Promise<void> {
    if (!this.#closed) {
      try {
        const payload: ErrorPayload = { code: err.code, message: err.message };
        await this.send(FrameType.Error, payload);
      } catch {
        // The peer may already be gone; the close below is what matters.
      }
    }
    this.close();
  }

  /** Closes the channel and every fd still queued. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const f of this.#queue.splice(0)) for (const fd of f.fds) closeQuietly(fd);
    this.#decoder.dispose();
    this.channel.close();
    this.#waiter?.reject(new BatonError('ERR_BATON_CHANNEL_CLOSED', `upgrade channel to ${this.label} closed`));
    this.#settlePings('closed');
  }

  #settlePings(outcome: PingOutcome): void {
    for (const settle of [...this.#pings.values()]) settle(outcome);
  }

  /** Ping and Pong are the channel's own business: answered or settled here, never queued. */
  #liveness(f: DecodedFrame): boolean {
    if (f.type !== FrameType.Ping && f.type !== FrameType.Pong) return false;
    for (const fd of f.fds) closeQuietly(fd);
    const seq = f.payload.seq;
    if (f.type === FrameType.Ping) {
      if (!this.closed) this.send(FrameType.Pong, { seq } satisfies PingPayload).catch(() => undefined);
    } else {
      this.#pings.get(seq)?.('pong');
    }
    return true;
  }

  #onData(chunk: Buffer, fds: number[]): void {
    if (this.#failure || this.#closed) {
      // Nothing more is read from a failed peer; fds that still arrive are closed at once.
      for (const fd of fds) closeQuietly(fd);
      return;
    }
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk, fds);
    } catch (err) {
      this.#fail(asError(err));
      return;
    }
    for (let i = 0; i < frames.length; i++) {
      let f: DecodedFrame;
      try {
        f = checkPayload(frames[i]!, this.label);
      } catch (err) {
        for (const rest of frames.slice(i)) for (const fd of rest.fds) closeQuietly(fd);
        this.#decoder.dispose();
        this.#fail(asError(err));
        return;
      }
      if (this.#liveness(f)) continue;
      if (this.#waiter) this.#waiter.resolve(f);
      else this.#queue.push(f);
    }
  }

  #fail(err: Error): void {
    if (this.#failure || this.#closed) return;
    this.#failure = err;
    this.#waiter?.reject(err);
    this.#settlePings('closed');
  }
}

function isFrameOf<T extends FrameType>(frame: DecodedFrame, type: T): frame is DecodedFrame & DecodedFrame<T> {
  return frame.type === type;
}

async function settleFrame(frame: DecodedFrame, label: string): Promise<DecodedFrame> {
  if (frame.type !== FrameType.Error) return frame;
  for (const fd of frame.fds) closeQuietly(fd);
  // Decoded with its schema already (payloads.ts); a code this build does not know becomes ERR_BATON_ABORTED.
  const p = frame.payload;
  const code = Object.hasOwn(ErrorCodes, p.code) ? (p.code as ErrorCode) : 'ERR_BATON_ABORTED';
  throw new BatonError(code, `${label} reported ${p.code}: ${p.message}`);
}

/** True for failures meaning the other side is gone (not that it refused): a closed channel, or a syscall error. */
export function isPeerLoss(err: unknown): boolean {
  if (isBatonError(err)) return err.code === 'ERR_BATON_CHANNEL_CLOSED';
  return typeof (err as NodeJS.ErrnoException | undefined)?.errno === 'number';
}
