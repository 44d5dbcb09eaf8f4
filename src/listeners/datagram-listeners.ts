/**
 * Datagram (UDP) listeners of a generation: a `dgram.Socket` bound to an
 * inherited socket of its name, or bound fresh — the datagram sibling of the
 * stream listeners of `listener-set.ts`, which owns the pool they share.
 *
 * A UDP socket has no accept queue and no connections: the handover moves the
 * socket itself (its fd, by exec inheritance or SCM_RIGHTS), and the kernel's
 * receive queue belongs to the socket, not to an fd, so it survives the
 * predecessor closing its copy. What keeps a handover lossless is who reads:
 * a successor binds the inherited fd at once (the app may send) but does not
 * read it before it is ready; the predecessor stops reading at that moment
 * (libuv's recvStop: datagrams arriving from then on wait in the kernel for
 * the successor) and keeps its socket open for sending — replies to the
 * datagrams it had read — until its drain ends. Exactly one process reads at
 * any time, so no datagram is read twice and none is left unread.
 *
 * @module
 */
import type dgram from 'node:dgram';
import { once } from 'node:events';
import { BatonError } from '../core/errors.js';
import { datagramFd, datagramMarkConnected, datagramReceiving, datagramType, hasDatagramInternals } from '../native/internals.js';
import { closeQuietly } from '../native/socket-info.js';
import type { SocketDescription } from '../native/socket-info.js';
import type { ListenerEntry } from '../protocol/frames.js';

/** An inherited fd of the pool (listener-set.ts's `InheritedListener`, which this file cannot import: listener-set imports it). */
interface PoolEntry {
  name: string | undefined;
  fd: number;
  description: SocketDescription;
}

/** The two kinds of datagram listener (Node's `dgram.SocketType`s baton hands over). */
export type DatagramType = 'udp4' | 'udp6';

/**
 * Where a datagram listener is bound: `port` 0 (the default) picks one on a
 * fresh bind and takes the inherited socket of the name whatever its port;
 * `address` defaults to all interfaces of the type (`0.0.0.0` / `::`).
 */
export interface DatagramAddress {
  type: DatagramType;
  port?: number;
  address?: string;
}

/** A named datagram listener of this generation. */
export interface DatagramListener {
  readonly name: string;
  readonly socket: dgram.Socket;
  readonly kind: DatagramType;
  /** Bound local address. */
  readonly address: string;
  /** Bound local port (never 0). */
  readonly port: number;
  /** For a socket connected to one peer (`socket.connect()`, kept across upgrades): that peer. */
  readonly remote: { address: string; port: number } | undefined;
  readonly origin: 'inherited' | 'bound';
}

/**
 * The datagram listeners of one generation.
 *
 * Fd ownership: an inherited fd taken from the pool is owned by the
 * `dgram.Socket` bound to it from then on (its close() closes it); a socket
 * bound fresh owns its own. {@link DatagramListeners.manifest} lends the
 * sockets' fds (the caller sends or passes them on, never closes them).
 *
 * Reading: a socket bound to an inherited fd while `defer()` says so does not
 * read until {@link DatagramListeners.activate}; {@link DatagramListeners.pause}
 * and {@link DatagramListeners.resume} stop and restart reading on all of them
 * (the predecessor's drain and its rollback); {@link DatagramListeners.close}
 * closes them at the drain's end.
 */
export class DatagramListeners {
  readonly #pool: PoolEntry[];
  readonly #defer: () => boolean;
  readonly #byAddress: boolean;
  readonly #listeners = new Map<string, DatagramListener>();
  /** Sockets bound but not reading until activate(). */
  readonly #deferred = new Set<dgram.Socket>();
  #paused = false;

  /**
   * `pool` is the generation's pool of inherited fds (shared with the stream
   * listeners); `defer()` tells whether to hold reading back. With
   * `byAddress` (a supervised worker: the master's config names its sockets,
   * not the app), a socket whose name is not in the pool takes the inherited
   * one bound where it asks (type, port and address), whatever that one's name.
   */
  constructor(pool: PoolEntry[], defer: () => boolean, byAddress = false) {
    this.#pool = pool;
    this.#defer = defer;
    this.#byAddress = byAddress;
  }

  /** The listeners in the order they were set up. */
  get all(): readonly DatagramListener[] {
    return [...this.#listeners.values()];
  }

  /** Whether `name` is set up here. */
  has(name: string): boolean {
    return this.#listeners.has(name);
  }

  /**
   * Binds `socket` (unbound, of `address.type`) to the inherited datagram
   * socket called `name` — or, for an unnamed systemd fd, of that address —
   * else to a fresh socket at `address`. An inherited socket connected to a
   * peer is marked connected in Node (the kernel socket already is), so
   * `send()` without an address and `remoteAddress()` keep working. Resolves once bound (and
   * connected). The caller checks the name is free (see ListenerSet).
   *
   * @throws ERR_BATON_LISTENER_CONFLICT when the socket is bound already or
   *   its type is not `address.type`; ERR_BATON_INHERITED_FD_INVALID when
   *   the inherited socket of that name is of the other family;
   *   ERR_BATON_INTERNAL_MISSING when Node's dgram internals are not there; a
   *   bind's system error as Node raises it.
   */
  async listen(name: string, address: DatagramAddress, socket: dgram.Socket): Promise<DatagramListener> {
    const type = datagramType(socket);
    if (type !== undefined && type !== address.type) {
      throw new BatonError('ERR_BATON_LISTENER_CONFLICT', `datagram listener '${name}': the socket is ${type}, not ${address.type}`);
    }
    if (isBound(socket)) {
      throw new BatonError('ERR_BATON_LISTENER_CONFLICT', `datagram listener '${name}': the socket is already bound`);
    }
    if (!hasDatagramInternals(socket)) {
      throw new BatonError(
        'ERR_BATON_INTERNAL_MISSING',
        `datagram listener '${name}': Node ${process.version} lacks the dgram internals baton hands a UDP socket over with`,
      );
    }
    const index = this.#findInherited(name, address);
    let origin: DatagramListener['origin'];
    let remote: DatagramListener['remote'];
    if (index >= 0) {
      const inherited = this.#pool[index]!;
      const family = address.type === 'udp4' ? 'inet' : 'inet6';
      if (inherited.description.family !== family) {
        throw new BatonError(
          'ERR_BATON_INHERITED_FD_INVALID',
          `datagram listener '${name}': the inherited socket (fd ${inherited.fd}) is ${inherited.description.family}, not ${address.type}`,
        );
      }
      this.#pool.splice(index, 1);
      await bindOn(socket, { fd: inherited.fd }).catch((err: unknown) => {
        closeQuietly(inherited.fd);
        throw err;
      });
      // bind({ fd }) starts reading at once (libuv reads on the next loop turn): stopped in the same tick.
      if (this.#defer() || this.#paused) {
        datagramReceiving(socket, false);
        if (this.#defer()) this.#deferred.add(socket);
      }
      const d = inherited.description;
      if (d.peerAddress !== undefined && d.peerPort !== undefined) {
        // The kernel socket is connected already (libuv knows: a connect() now fails with EISCONN).
        remote = { address: d.peerAddress, port: d.peerPort };
        if (!datagramMarkConnected(socket)) {
          socket.close();
          throw new BatonError(
            'ERR_BATON_INTERNAL_MISSING',
            `datagram listener '${name}': Node ${process.version} does not keep a dgram socket's connect state where baton expects it; the socket inherited connected to ${remote.address}:${remote.port} cannot be adopted`,
          );
        }
      }
      origin = 'inherited';
    } else {
      await bindOn(socket, { port: address.port ?? 0, address: address.address, exclusive: true });
      origin = 'bound';
    }
    const bound = socket.address();
    const listener: DatagramListener = { name, socket, kind: address.type, address: bound.address, port: bound.port, remote, origin };
    this.#listeners.set(name, listener);
    socket.once('close', () => {
      if (this.#listeners.get(name) === listener) this.#listeners.delete(name);
      this.#deferred.delete(socket);
    });
    return listener;
  }

  /** Starts reading on the sockets held back by `defer()` (the generation became ready). */
  activate(): void {
    for (const socket of this.#deferred) if (!this.#paused) datagramReceiving(socket, true);
    this.#deferred.clear();
  }

  /** Stops reading on every socket (datagrams wait in the kernel for the successor); sending still works. */
  pause(): void {
    this.#paused = true;
    for (const l of this.#listeners.values()) datagramReceiving(l.socket, false);
  }

  /** Reads again on every socket not held back (a rollback, or the end of a quiesce). */
  resume(): void {
    this.#paused = false;
    for (const l of this.#listeners.values()) if (!this.#deferred.has(l.socket)) datagramReceiving(l.socket, true);
  }

  /** Closes every socket (this process's copy of each fd: a successor's own copy keeps the kernel socket). */
  close(): void {
    for (const l of [...this.#listeners.values()]) {
      try {
        l.socket.close();
      } catch {
        // ERR_SOCKET_DGRAM_NOT_RUNNING: the app closed it already.
      }
    }
    this.#listeners.clear();
    this.#deferred.clear();
  }

  /** Manifest entries and (lent) fds of every open socket, in the same order. */
  manifest(): { entries: ListenerEntry[]; fds: number[] } {
    const entries: ListenerEntry[] = [];
    const fds: number[] = [];
    for (const l of this.#listeners.values()) {
      const fd = datagramFd(l.socket);
      if (fd === undefined) continue;
      entries.push({ name: l.name, kind: l.kind, address: l.address, port: l.port });
      fds.push(fd);
    }
    return { entries, fds };
  }

  #findInherited(name: string, address: DatagramAddress): number {
    const byName = this.#pool.findIndex((l) => l.name === name && l.description.type === 'dgram');
    if (byName >= 0) return byName;
    if (!address.port) return -1;
    // Under a supervisor, the master's socket of this address whatever its name (an unmodified
    // app's bind()); else an unnamed systemd socket (ListenDatagram=) of exactly this address.
    const family = address.type === 'udp4' ? 'inet' : 'inet6';
    return this.#pool.findIndex(
      (l) =>
        (this.#byAddress || l.name === undefined) &&
        l.description.type === 'dgram' &&
        (!this.#byAddress || l.description.family === family) &&
        l.description.port === address.port &&
        hostMatches(address.address, l.description.address),
    );
  }
}

/** Whether a socket bound to `bound` serves a bind() to `asked` (undefined: any address; `localhost`: a loopback one). */
function hostMatches(asked: string | undefined, bound: string | undefined): boolean {
  if (asked === undefined || asked === bound) return true;
  return asked === 'localhost' && (bound === '127.0.0.1' || bound === '::1');
}

function isBound(socket: dgram.Socket): boolean {
  try {
    socket.address();
    return true;
  } catch {
    return false; // ERR_SOCKET_DGRAM_NOT_RUNNING
  }
}

/** `options` is a BindOptions or `{ fd }` (Node's form for an existing socket); rejects with the bind's error. */
async function bindOn(socket: dgram.Socket, options: dgram.BindOptions): Promise<void> {
  const stop = new AbortController();
  const listening = once(socket, 'listening', { signal: stop.signal }); // rejects on 'error'
  try {
    socket.bind(options); // an fd of the wrong type throws here
  } catch (err) {
    stop.abort();
    listening.catch(() => undefined);
    throw err;
  }
  await listening;
}
