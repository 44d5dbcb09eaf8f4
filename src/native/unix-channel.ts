/**
 * A bidirectional byte stream over a unix stream socket that can carry fds (SCM_RIGHTS),
 * driven by a libuv poller so that it never blocks the event loop and never busy-polls.
 *
 * @module
 */
import { BatonError, type ErrorCode } from '../core/errors.js';
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';

import { loadBinding, MAX_FDS_PER_MESSAGE, type NativeBinding, type PollHandle } from './binding.js';
import { peerCredentials, type PeerCredentials } from './socket-info.js';
import { check, systemError } from './system-error.js';

/** Bytes asked for by each recvmsg. */
export const READ_BUFFER_SIZE = 64 * 1024;

/**
 * Most recvmsg calls per readable event. The poller is level-triggered, so whatever is left
 * is read on the next loop iteration; other I/O and timers get their turn in between.
 */
export const MAX_READS_PER_EVENT = 16;

/** Largest slice handed to one sendmsg (the addon takes int32 lengths). */
const MAX_SEND_LENGTH = 1 << 30;

const EAGAIN = -constants.errno.EAGAIN;
const NO_FDS: readonly number[] = Object.freeze([]);

/** Events of a {@link UnixChannel}. */
export interface UnixChannelEvents {
  /**
   * Bytes from the peer, and the fds that arrived with them, in the order sent. From the
   * moment the event fires, the listener owns the fds (CLOEXEC set) and must close them
   * (`closeFd`) or hand them on (e.g. `net.Server#listen({ fd })`). When no 'data' listener
   * is attached, the bytes are dropped and the fds are closed.
   */
  data: [chunk: Buffer, fds: number[]];
  /** The peer closed its end (EOF). Reading stops; writing may still work; call `close()`. */
  end: [];
  /**
   * A fatal error; the channel is closed and 'close' follows. Code
   * 'ERR_BATON_FDS_TRUNCATED' when the kernel dropped received fds (MSG_CTRUNC), otherwise a
   * system error (code/errno/syscall) from recvmsg or the poller.
   */
  error: [error: Error];
  /** Emitted once, asynchronously, after the channel was closed for any reason. */
  close: [];
}

interface PendingWrite {
  readonly data: Uint8Array;
  readonly batches: readonly (readonly number[])[];
  offset: number;
  batch: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

function codedError(code: ErrorCode, message: string, cause?: unknown): BatonError {
  return new BatonError(code, message, cause === undefined ? undefined : { cause });
}

function channelClosedError(cause?: unknown): BatonError {
  return codedError('ERR_BATON_CHANNEL_CLOSED', 'the unix channel is closed', cause);
}

function validateFds(fds: readonly number[]): void {
  if (!Array.isArray(fds)) throw new TypeError('fds must be an array of file descriptors');
  for (const fd of fds) {
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new TypeError(`invalid file descriptor in fds: ${String(fd)}`);
    }
  }
}

/**
 * A bidirectional byte stream over a non-blocking unix stream socket that also carries fds.
 *
 * Ownership: the channel owns its socket fd ({@link UnixChannel.fd}) and closes it in
 * {@link UnixChannel.close}. fds given to {@link UnixChannel.write} stay the caller's; fds
 * delivered by 'data' become the listener's.
 *
 * Reading starts as soon as the channel exists (attach 'data' in the same tick). Byte
 * boundaries are those of a stream: a chunk may hold parts of several writes, or part of one.
 * fds keep their order; each arrives with the chunk that holds the byte it was attached to.
 */
export class UnixChannel extends EventEmitter<UnixChannelEvents> {
  /** The socket fd, owned by the channel until {@link UnixChannel.close}. */
  readonly fd: number;

  readonly #native: NativeBinding;
  #poll: PollHandle | undefined;
  #pollReadable = true;
  #pollWritable = false;
  #closed = false;
  #paused = false;
  #ended = false;
  #waitingWritable = false;
  #readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  readonly #writes: PendingWrite[] = [];

  private constructor(fd: number) {
    super();
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`invalid file descriptor: ${String(fd)}`);
    this.#native = loadBinding();
    this.fd = fd;
    const poll = this.#native.pollStart(fd, true, false, (status, readable, writable) => {
      this.#onPoll(status, readable, writable);
    });
    if (typeof poll === 'number') {
      this.#closed = true;
      this.#native.close(fd);
      throw systemError(poll, 'uv_poll_start');
    }
    this.#poll = poll;
  }

  /**
   * Connect to the unix socket at `path` without waiting: AF_UNIX connects at once when the
   * listener's backlog has room. A full backlog (a listener that does not accept: busy, or
   * stopped) throws EAGAIN instead of blocking this thread; {@link UnixChannel.connectWait}
   * waits for room. The returned channel owns the new fd.
   *
   * @throws system error with syscall 'connect' and `path` (ENOENT, ECONNREFUSED for a stale
   *   socket file, EAGAIN for a full backlog, EACCES, ENAMETOOLONG for a path longer than 107
   *   bytes, …).
   */
  static connect(path: string): UnixChannel {
    const fd = check(loadBinding().unixConnect(path), 'connect', path);
    return new UnixChannel(fd);
  }

  /**
   * Connect to the unix socket at `path`, waiting up to `timeoutMs` for room in the listener's
   * backlog. The wait happens in the libuv thread pool, never on this thread (one pool thread is
   * held while it lasts). The channel owns the new fd.
   *
   * @returns a promise rejected with a system error (syscall 'connect', `path`): ETIMEDOUT when
   *   the backlog stayed full for `timeoutMs`, or any error of {@link UnixChannel.connect}.
   */
  static connectWait(path: string, timeoutMs: number): Promise<UnixChannel> {
    const native = loadBinding();
    const fd = native.unixConnect(path);
    if (fd !== EAGAIN) return new Promise((resolve) => resolve(new UnixChannel(check(fd, 'connect', path))));
    return new Promise((resolve, reject) => {
      const queued = native.unixConnectWait(path, Math.max(1, Math.ceil(timeoutMs)), (result) => {
        try {
          resolve(new UnixChannel(check(result, 'connect', path)));
        } catch (err) {
          reject(err as Error);
        }
      });
      if (queued < 0) reject(systemError(queued, 'connect', path));
    });
  }

  /**
   * Wrap a connected unix stream socket fd (e.g. one inherited through spawn's stdio, or
   * received over another channel). The channel takes ownership: it makes the fd
   * non-blocking and closes it on {@link UnixChannel.close}, or right away if this throws.
   *
   * @throws system error with syscall 'uv_poll_start' when the fd cannot be watched (EBADF,
   *   EEXIST if something else in this thread already polls it).
   */
  static fromFd(fd: number): UnixChannel {
    return new UnixChannel(fd);
  }

  /**
   * A connected socketpair: `channel` owns one end; the caller owns `peerFd` (non-blocking,
   * CLOEXEC), typically passes it to a child through spawn's `stdio` array (where it appears
   * as fd 3, 4, …, without CLOEXEC) and must then close it with `closeFd`.
   *
   * @throws system error with syscall 'socketpair' (EMFILE, …).
   */
  static pair(): { channel: UnixChannel; peerFd: number } {
    const native = loadBinding();
    const [fd, peerFd] = check(native.socketpair(), 'socketpair');
    let channel: UnixChannel;
    try {
      channel = new UnixChannel(fd);
    } catch (error) {
      native.close(peerFd);
      throw error;
    }
    return { channel, peerFd };
  }

  /** True once {@link UnixChannel.close} ran (or a fatal error closed the channel). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Number of writes not yet fully handed to the kernel. */
  get pendingWrites(): number {
    return this.#writes.length;
  }

  /**
   * pid/uid/gid of the peer process (SO_PEERCRED, as of connect/socketpair time).
   *
   * @throws Error code 'ERR_BATON_CHANNEL_CLOSED' after close; a system error otherwise.
   */
  peerCredentials(): PeerCredentials {
    if (this.#closed) throw channelClosedError();
    return peerCredentials(this.fd);
  }

  /**
   * Queue `data` and `fds` for the peer. Writes go out in call order; the promise resolves
   * when every byte was handed to the kernel (partial writes and EAGAIN are handled by
   * waiting for writability on the event loop).
   *
   * fds: the caller keeps ownership (the kernel duplicates them into the message) but must
   * keep them open until the promise settles. Up to 253 fds travel with the first byte(s) of
   * `data`; more are sent in batches of at most 253, each attached to its own byte, so
   * `data.length` must be at least the number of batches. The receiver gets them in order.
   * Do not modify `data` before the promise settles.
   *
   * @throws TypeError for invalid fds; RangeError when `data` is too short for the fds (both
   *   synchronously).
   * @returns a promise rejected with the system error of sendmsg (EPIPE when the peer is
   *   gone, EBADF for a bad fd in `fds`, …) for this write only, or with code
   *   'ERR_BATON_CHANNEL_CLOSED' if the channel is or gets closed before it completed.
   */
  write(data: Uint8Array, fds: readonly number[] = NO_FDS): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Buffer or Uint8Array');
    validateFds(fds);
    const batches: number[][] = [];
    for (let i = 0; i < fds.length; i += MAX_FDS_PER_MESSAGE) {
      batches.push(fds.slice(i, i + MAX_FDS_PER_MESSAGE));
    }
    if (data.length < batches.length) {
      throw new RangeError(
        `write: ${fds.length} fds need ${batches.length} batch(es) of at most ${MAX_FDS_PER_MESSAGE}, ` +
          `each carried by at least one byte, but data has ${data.length} byte(s)`,
      );
    }
    if (this.#closed) return Promise.reject(channelClosedError());
    return new Promise<void>((resolve, reject) => {
      this.#writes.push({ data, batches, offset: 0, batch: 0, resolve, reject });
      if (this.#writes.length === 1 && !this.#waitingWritable) this.#flush();
    });
  }

  /** Stop reading (the poller stops watching for readability); data waits in the kernel. */
  pause(): this {
    this.#paused = true;
    this.#updatePoll();
    return this;
  }

  /** Resume reading after {@link UnixChannel.pause}. */
  resume(): this {
    this.#paused = false;
    this.#updatePoll();
    return this;
  }

  /** Let an active channel keep the event loop alive (the default). */
  ref(): this {
    if (this.#poll !== undefined) this.#native.pollRef(this.#poll, true);
    return this;
  }

  /** Do not keep the event loop alive for this channel alone. */
  unref(): this {
    if (this.#poll !== undefined) this.#native.pollRef(this.#poll, false);
    return this;
  }

  /**
   * Stop the poller, close the socket fd and reject pending writes with code
   * 'ERR_BATON_CHANNEL_CLOSED'. Idempotent; 'close' is emitted once, asynchronously. fds
   * already delivered by 'data' are unaffected (they belong to the listener).
   */
  close(): void {
    if (this.#shutdown()) process.nextTick(() => this.emit('close'));
  }

  #shutdown(cause?: unknown): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    if (this.#poll !== undefined) {
      this.#native.pollClose(this.#poll);
      this.#poll = undefined;
    }
    this.#native.close(this.fd);
    for (const write of this.#writes.splice(0)) write.reject(channelClosedError(cause));
    return true;
  }

  #destroy(error: Error): void {
    if (!this.#shutdown(error)) return;
    process.nextTick(() => {
      this.emit('error', error);
      this.emit('close');
    });
  }

  #updatePoll(): void {
    if (this.#closed || this.#poll === undefined) return;
    const readable = !this.#paused && !this.#ended;
    const writable = this.#waitingWritable;
    if (readable === this.#pollReadable && writable === this.#pollWritable) return;
    const rc = this.#native.pollUpdate(this.#poll, readable, writable);
    if (rc < 0) {
      this.#destroy(systemError(rc, 'uv_poll_start'));
      return;
    }
    this.#pollReadable = readable;
    this.#pollWritable = writable;
  }

  #onPoll(status: number, readable: boolean, writable: boolean): void {
    if (this.#closed) return;
    if (status < 0) {
      // libuv reports POLLERR as EBADF and stops watching. A unix socket raises POLLERR when
      // the peer closed with bytes of ours unread (ECONNRESET), yet what the peer sent before
      // closing is still queued: deliver it (e.g. its Error frame), then fail with recvmsg's
      // own error. Only if nothing explains it, fail with the poller's status.
      this.#read(Infinity);
      if (!this.#closed) this.#destroy(systemError(status, 'uv_poll'));
      return;
    }
    if (writable) this.#flush();
    if (readable) this.#read();
  }

  /** Hand queued writes to the kernel until done or EAGAIN. */
  #flush(): void {
    this.#waitingWritable = false;
    while (!this.#closed && this.#writes.length > 0) {
      const write = this.#writes[0]!;
      let failed: Error | undefined;
      while (write.offset < write.data.length) {
        const fds = write.batches[write.batch] ?? NO_FDS;
        let length = Math.min(write.data.length - write.offset, MAX_SEND_LENGTH);
        // Every batch but the last rides on a single byte, so each batch gets its own byte.
        if (fds.length > 0 && write.batch < write.batches.length - 1) length = 1;
        const sent = this.#native.sendmsg(this.fd, write.data, write.offset, length, fds);
        if (sent === EAGAIN) {
          this.#waitingWritable = true;
          this.#updatePoll();
          return;
        }
        if (sent < 0) {
          failed = systemError(sent, 'sendmsg');
          break;
        }
        write.offset += sent;
        if (fds.length > 0) write.batch += 1;
      }
      this.#writes.shift();
      if (failed === undefined) write.resolve();
      else write.reject(failed);
    }
    this.#updatePoll();
  }

  /** Read until EAGAIN, at most `maxReads` times (default MAX_READS_PER_EVENT). */
  #read(maxReads = MAX_READS_PER_EVENT): void {
    for (let i = 0; i < maxReads; i++) {
      if (this.#closed || this.#paused || this.#ended) return;
      const result = this.#native.recvmsg(this.fd, this.#readBuffer);
      if (typeof result === 'number') {
        if (result === EAGAIN) return;
        this.#destroy(systemError(result, 'recvmsg'));
        return;
      }
      if (result.ctrunc) {
        for (const fd of result.fds) this.#native.close(fd);
        this.#destroy(
          codedError(
            'ERR_BATON_FDS_TRUNCATED',
            `recvmsg: the kernel dropped file descriptors sent by the peer (MSG_CTRUNC); ` +
              `${result.fds.length} arrived and were closed, the rest were lost. This process is ` +
              `most likely at its open file limit (RLIMIT_NOFILE, see \`ulimit -n\`). ` +
              `The channel is closed.`,
          ),
        );
        return;
      }
      if (result.bytes === 0) {
        this.#ended = true;
        this.#updatePoll();
        this.emit('end');
        return;
      }
      let chunk: Buffer;
      if (result.bytes >= READ_BUFFER_SIZE / 2) {
        // Large chunk: hand over the buffer itself rather than copying it.
        chunk = this.#readBuffer.subarray(0, result.bytes);
        this.#readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
      } else {
        chunk = Buffer.from(this.#readBuffer.subarray(0, result.bytes));
      }
      if (this.listenerCount('data') === 0) {
        for (const fd of result.fds) this.#native.close(fd);
        continue;
      }
      this.emit('data', chunk, result.fds);
    }
  }
}

/** What is found at a unix socket path. */
export type ProbeResult = { kind: 'none' } | { kind: 'stale' } | { kind: 'busy' } | { kind: 'running'; channel: UnixChannel };

/**
 * Looks at the unix socket path `socketPath` without waiting: connects if something listens
 * there (the caller then owns the channel), reports a listener whose backlog is full (`busy`:
 * alive but not accepting now; {@link UnixChannel.connectWait} waits for it), a stale socket file
 * left by a process that died (nobody accepts: ECONNREFUSED), or nothing. Other errors (EACCES,
 * …) are thrown with Node's shape.
 */
export function probeUnixSocket(socketPath: string): ProbeResult {
  try {
    return { kind: 'running', channel: UnixChannel.connect(socketPath) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'none' };
    if (code === 'ECONNREFUSED') return { kind: 'stale' };
    if (code === 'EAGAIN') return { kind: 'busy' };
    throw err;
  }
}
