import net from 'node:net';
import { loadBinding, type PollHandle } from '../native/binding.js';
import { closeQuietly } from '../native/socket-info.js';

interface Parked {
  fd: number;
  server: net.Server;
  listener: string;
}

/** Most ready fds taken per wake-up; more are taken on the next turn (the poller is level-triggered). */
const READY_PER_TURN = 1024;

/**
 * Idle HTTP/1.1 connections adopted from a predecessor, held as bare fds
 * until their client sends something. Wrapping an fd in a `net.Socket` and
 * handing it to the HTTP server costs some 30–60 µs; parking it costs one
 * `epoll_ctl` (about 1 µs): every parked fd sits in one epoll set, which the
 * event loop watches as a single fd — so adopting thousands of idle
 * connections stays cheap, and an idle connection that is still idle at the
 * next upgrade moves on as a bare fd.
 *
 * Fd ownership: Parking owns every parked fd. When the fd becomes readable
 * (a request, or the client closing) it is woken: taken out of the set,
 * wrapped in a `net.Socket` and given to its server as a new connection,
 * which then owns it. No fd is closed while it is still in the set (the
 * registration would outlive it: the connection's file is shared with other
 * processes); the set is closed whenever it empties.
 */
export class Parking {
  readonly #parked = new Map<number, Parked>();
  #set: { epfd: number; poll: PollHandle } | undefined;

  /** Connections parked now. */
  get size(): number {
    return this.#parked.size;
  }

  /** Parks `fd`, an idle connection of `server` (listener `listener`). */
  park(fd: number, server: net.Server, listener: string): void {
    const p: Parked = { fd, server, listener };
    const set = this.#set ?? this.#openSet();
    if (set && loadBinding().epollAdd(set.epfd, fd) === 0) {
      this.#parked.set(fd, p);
      return;
    }
    // Cannot watch it (should not happen): serve it as a connection right away.
    this.#wakeNow(p);
  }

  /** Wakes every parked connection (for a drain without a successor). */
  wakeAll(): void {
    for (const p of this.#takeOut()) this.#wakeNow(p);
  }

  /**
   * Hands every parked connection to `take`, no longer watched; `take`
   * returns false for one it cannot use, which is then woken. The callbacks
   * given to `take` settle each fd: `release` closes it (it left), `giveBack`
   * wakes it (it stays).
   */
  takeAll(take: (fd: number, listener: string, release: () => void, giveBack: () => void) => boolean): void {
    for (const p of this.#takeOut()) {
      const release = () => closeQuietly(p.fd);
      const giveBack = () => this.#wakeNow(p);
      if (!take(p.fd, p.listener, release, giveBack)) this.#wakeNow(p);
    }
  }

  /** Every parked connection, forgotten here, and the set closed (which unregisters them all at once). */
  #takeOut(): Parked[] {
    const all = [...this.#parked.values()];
    this.#parked.clear();
    this.#closeSet();
    return all;
  }

  #openSet(): { epfd: number; poll: PollHandle } | undefined {
    const binding = loadBinding();
    const epfd = binding.epollCreate();
    if (epfd < 0) return undefined;
    const poll = binding.pollStart(epfd, true, false, (status) => this.#onReady(status));
    if (typeof poll === 'number') {
      binding.close(epfd);
      return undefined;
    }
    this.#set = { epfd, poll };
    return this.#set;
  }

  #closeSet(): void {
    const set = this.#set;
    if (!set) return;
    this.#set = undefined;
    const binding = loadBinding();
    binding.pollClose(set.poll);
    binding.close(set.epfd);
  }

  /** Some parked fds are readable: wake them. */
  #onReady(status: number): void {
    const set = this.#set;
    if (!set) return;
    const ready = status < 0 ? status : loadBinding().epollTakeReady(set.epfd, READY_PER_TURN);
    if (typeof ready === 'number') {
      // The set itself failed (should not happen): serve every parked connection as usual.
      this.wakeAll();
      return;
    }
    for (const fd of ready) {
      const p = this.#parked.get(fd);
      if (!p) continue;
      this.#parked.delete(fd);
      this.#wakeNow(p);
    }
    if (this.#parked.size === 0) this.#closeSet();
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
