import net from 'node:net';
import { loadBinding, type PollHandle } from '../native/binding.js';
import { closeQuietly } from '../native/socket-info.js';

interface Parked {
  fd: number;
  server: net.Server;
  listener: string;
  handle: PollHandle | undefined;
}

/**
 * Idle HTTP/1.1 connections adopted from a predecessor, held as bare fds
 * until their client sends something. Wrapping an fd in a `net.Socket` and
 * handing it to the HTTP server costs some 30–60 µs; watching it costs about
 * 5 µs — so adopting thousands of idle connections stays cheap, and an idle
 * connection that is still idle at the next upgrade moves on as a bare fd.
 *
 * Fd ownership: Parking owns every parked fd. When the fd becomes readable
 * (a request, or the client closing) it is woken: wrapped in a `net.Socket`
 * and given to its server as a new connection, which then owns it.
 */
export class Parking {
  readonly #parked = new Map<number, Parked>();

  /** Connections parked now. */
  get size(): number {
    return this.#parked.size;
  }

  /** Parks `fd`, an idle connection of `server` (listener `listener`). */
  park(fd: number, server: net.Server, listener: string): void {
    const p: Parked = { fd, server, listener, handle: undefined };
    this.#parked.set(fd, p);
    this.#watch(p);
  }

  /** Wakes every parked connection (for a drain without a successor). */
  wakeAll(): void {
    for (const p of [...this.#parked.values()]) this.#wake(p);
  }

  /**
   * Hands every parked connection to `take` and stops watching it; `take`
   * returns false for one it cannot use, which is then woken. The callbacks
   * given to `take` settle each fd: `release` closes it (it left), `giveBack`
   * wakes it (it stays).
   */
  takeAll(take: (fd: number, listener: string, release: () => void, giveBack: () => void) => boolean): void {
    for (const p of [...this.#parked.values()]) {
      this.#unwatch(p);
      this.#parked.delete(p.fd);
      const release = () => closeQuietly(p.fd);
      const giveBack = () => this.#wakeNow(p);
      if (!take(p.fd, p.listener, release, giveBack)) this.#wakeNow(p);
    }
  }

  #watch(p: Parked): void {
    const binding = loadBinding();
    const handle = binding.pollStart(p.fd, true, false, () => this.#wake(p));
    if (typeof handle === 'number') {
      // Cannot watch it (should not happen): serve it as a connection right away.
      this.#parked.delete(p.fd);
      this.#wakeNow(p);
      return;
    }
    p.handle = handle;
  }

  #unwatch(p: Parked): void {
    if (p.handle !== undefined) loadBinding().pollClose(p.handle);
    p.handle = undefined;
  }

  #wake(p: Parked): void {
    if (!this.#parked.delete(p.fd)) return;
    this.#unwatch(p);
    this.#wakeNow(p);
  }

  #wakeNow(p: Parked): void {
    let socket: net.Socket;
    try {
      socket = new net.Socket({ fd: p.fd, readable: true, writable: true });
    } catch {
      closeQuietly(p.fd);
      return;
    }
    p.server.emit('connection', socket);
  }
}
