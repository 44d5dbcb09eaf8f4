/**
 * A listening unix stream socket whose connections are {@link UnixChannel}s.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';

import { loadBinding, type NativeBinding, type PollHandle } from './binding.js';
import { check, systemError } from './system-error.js';
import { UnixChannel } from './unix-channel.js';

/** Default listen(2) backlog, as Node's net.Server uses. */
export const DEFAULT_BACKLOG = 511;

/** Default socket file mode: owner only. */
export const DEFAULT_SOCKET_MODE = 0o600;

/** Pause before accepting again after EMFILE/ENFILE/ENOBUFS/ENOMEM (the poller would spin). */
export const ACCEPT_BACKOFF_MS = 100;

/** Most accept calls per readable event. */
const MAX_ACCEPTS_PER_EVENT = 64;

const { errno } = constants;
const EAGAIN = -errno.EAGAIN;
/** The pending connection died before accept: try the next one. */
const TRANSIENT = new Set([-errno.ECONNABORTED, -errno.EPROTO, -errno.EINTR]);
/** Out of fds or memory: back off, keep listening. */
const RESOURCE = new Set([-errno.EMFILE, -errno.ENFILE, -errno.ENOBUFS, -errno.ENOMEM]);

/** Options of {@link UnixListener.listen}. */
export interface UnixListenOptions {
  /** listen(2) backlog; default {@link DEFAULT_BACKLOG}. */
  readonly backlog?: number;
  /** Socket file mode, applied before listen(2); default 0o600. */
  readonly mode?: number;
}

/** Events of a {@link UnixListener}. */
export interface UnixListenerEvents {
  /**
   * A new connection; the listener takes ownership of `channel` and must close it. Without a
   * 'connection' listener the connection is closed at once.
   */
  connection: [channel: UnixChannel];
  /**
   * An accept error (system error with syscall 'accept' and `path`). EMFILE, ENFILE, ENOBUFS
   * and ENOMEM are not fatal: accepting resumes after {@link ACCEPT_BACKOFF_MS}. Any other
   * error closes the listener, and 'close' follows.
   */
  error: [error: Error];
  /** Emitted once, asynchronously, after {@link UnixListener.close}. */
  close: [];
}

/**
 * A listening unix stream socket at a filesystem path. It owns its fd and closes it in
 * {@link UnixListener.close}; it never unlinks the socket file.
 */
export class UnixListener extends EventEmitter<UnixListenerEvents> {
  /** The filesystem path the socket was bound to. */
  readonly path: string;
  /** The listening socket fd, owned by the listener. */
  readonly fd: number;

  readonly #native: NativeBinding;
  #poll: PollHandle | undefined;
  #closed = false;
  #refed = true;
  #backoff: NodeJS.Timeout | undefined;

  private constructor(fd: number, path: string) {
    super();
    this.#native = loadBinding();
    this.fd = fd;
    this.path = path;
    const poll = this.#native.pollStart(fd, true, false, (status) => this.#onReadable(status));
    if (typeof poll === 'number') {
      this.#closed = true;
      this.#native.close(fd);
      throw systemError(poll, 'uv_poll_start', path);
    }
    this.#poll = poll;
  }

  /**
   * Bind and listen at `path` with the socket file's mode set (before listen) to `mode`. The
   * path must not exist (EADDRINUSE otherwise): removing a stale file is the caller's call.
   *
   * @throws system error with syscall 'listen' and `path` (EADDRINUSE, EACCES, ENOENT,
   *   ENAMETOOLONG for a path longer than 107 bytes, …).
   */
  static listen(path: string, { backlog = DEFAULT_BACKLOG, mode = DEFAULT_SOCKET_MODE }: UnixListenOptions = {}): UnixListener {
    if (!Number.isInteger(backlog)) throw new TypeError('backlog must be an integer');
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new RangeError('mode must be a file mode');
    const fd = check(loadBinding().unixListen(path, backlog, mode), 'listen', path);
    return new UnixListener(fd, path);
  }

  /** True once {@link UnixListener.close} ran (or a fatal error closed it). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Keep the event loop alive while listening (the default). */
  ref(): this {
    this.#refed = true;
    if (this.#poll !== undefined) this.#native.pollRef(this.#poll, true);
    this.#backoff?.ref();
    return this;
  }

  /** Do not keep the event loop alive for this listener alone. */
  unref(): this {
    this.#refed = false;
    if (this.#poll !== undefined) this.#native.pollRef(this.#poll, false);
    this.#backoff?.unref();
    return this;
  }

  /**
   * Stop accepting and close the listening fd. Idempotent. Does NOT unlink {@link path}: a
   * successor may already have renamed its own socket onto it, so the caller decides.
   * Connections already accepted are unaffected.
   */
  close(): void {
    if (this.#shutdown()) process.nextTick(() => this.emit('close'));
  }

  #shutdown(): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    if (this.#backoff !== undefined) clearTimeout(this.#backoff);
    this.#backoff = undefined;
    if (this.#poll !== undefined) this.#native.pollClose(this.#poll);
    this.#poll = undefined;
    this.#native.close(this.fd);
    return true;
  }

  #onReadable(status: number): void {
    if (this.#closed) return;
    if (status < 0) {
      this.#fail(systemError(status, 'uv_poll', this.path));
      return;
    }
    for (let i = 0; i < MAX_ACCEPTS_PER_EVENT && !this.#closed; i++) {
      const fd = this.#native.accept(this.fd);
      if (fd === EAGAIN) return;
      if (fd < 0) {
        if (TRANSIENT.has(fd)) continue;
        if (RESOURCE.has(fd)) {
          this.#pauseAccepting();
          this.emit('error', systemError(fd, 'accept', this.path));
          return;
        }
        this.#fail(systemError(fd, 'accept', this.path));
        return;
      }
      let channel: UnixChannel;
      try {
        channel = UnixChannel.fromFd(fd);
      } catch (error) {
        this.emit('error', error as Error);
        continue;
      }
      if (this.listenerCount('connection') === 0) channel.close();
      else this.emit('connection', channel);
    }
  }

  #pauseAccepting(): void {
    if (this.#poll === undefined || this.#backoff !== undefined) return;
    this.#native.pollUpdate(this.#poll, false, false);
    this.#backoff = setTimeout(() => {
      this.#backoff = undefined;
      if (this.#poll === undefined) return;
      const rc = this.#native.pollUpdate(this.#poll, true, false);
      if (rc < 0) this.#fail(systemError(rc, 'uv_poll_start', this.path));
    }, ACCEPT_BACKOFF_MS);
    if (!this.#refed) this.#backoff.unref();
  }

  #fail(error: Error): void {
    if (!this.#shutdown()) return;
    process.nextTick(() => {
      this.emit('error', error);
      this.emit('close');
    });
  }
}
