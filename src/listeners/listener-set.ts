import type dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { BatonError } from '../core/errors.js';
import type { ListenerEntry } from '../protocol/frames.js';
import type { SocketDescription } from '../native/socket-info.js';
import { probeUnixSocket } from '../native/unix-channel.js';
import { closeQuietly, describeSocket, dupFd } from '../native/socket-info.js';
import { handleFd } from '../native/internals.js';
import { applyTicketKeys, type TicketKeys } from './ticket-keys.js';
import { DatagramListeners, type DatagramAddress, type DatagramListener } from './datagram-listeners.js';

/** A listening socket this process received, not yet adopted by a server. */
export interface InheritedListener {
  /** Name from LISTEN_FDNAMES or the manifest; `undefined` when systemd gave none ("unknown"). */
  name: string | undefined;
  /** An fd with CLOEXEC set, owned by the pool until taken. */
  fd: number;
  description: SocketDescription;
}

/** How long the listening socket of a server the app closed stays open for a re-listen (see ListenerSet). */
export const RELISTEN_HOLD_MS = 10_000;

/** A listening socket whose server the app closed: kept open, not accepting, until a listen() of its name takes it. */
interface HeldListener {
  fd: number;
  description: SocketDescription;
  listener: Listener;
  /** It came from a deferred inherited listener (never accepted here): a re-listen defers it again. */
  deferred: boolean;
  timer: NodeJS.Timeout;
}

/** Where a listener listens: a TCP host and port (port 0 picks one) or a unix socket path. */
export type ListenAddress = { host?: string; port: number } | { path: string };

/** How a listener was obtained. */
export type ListenerOrigin = 'inherited' | 'bound';

/** A named listener of this generation. */
export interface Listener {
  readonly name: string;
  readonly server: net.Server;
  readonly kind: 'tcp' | 'unix';
  /** TCP: bound address; unix: socket path. */
  readonly address: string;
  /** TCP only: the bound port (never 0). */
  readonly port: number | undefined;
  readonly origin: ListenerOrigin;
}

/**
 * The named listeners of one generation, and the pool of inherited listening
 * fds not yet claimed.
 *
 * Fd ownership: the pool owns inherited fds until {@link ListenerSet.listen}
 * hands one to a server (which then owns it); {@link ListenerSet.closeUnclaimed}
 * closes the rest. A listener's fd is owned by its server.
 *
 * Re-listen: when the app closes a listener's server (`server.close()`), its
 * name is released, and the set keeps a duplicate of the listening fd for
 * `holdMs` (default {@link RELISTEN_HOLD_MS}): a listen() of the same name and
 * address in that time gets the same socket back, so the port never stops
 * accepting (connections wait in the kernel's accept queue meanwhile, none is
 * refused). The app's close only stops accepting: the server's open
 * connections are left alone while the socket is held (http's close would
 * also close idle keep-alive connections, racing requests their clients are
 * sending); when the hold ends without a re-listen, the fd is closed and an
 * http server's idle connections are closed as its own close() would have.
 * Unix socket listeners are not held (Node unlinks the path it bound).
 * The set owns held fds.
 */
export class ListenerSet {
  readonly #pool: InheritedListener[];
  readonly #listeners = new Map<string, Listener>();
  readonly #byServer = new Map<net.Server, Listener>();
  readonly #onServer: (server: net.Server) => void;
  /** Inherited listeners claimed but not yet accepting (see `deferInherited`). */
  readonly #deferred: { server: net.Server; inherited: InheritedListener }[] = [];
  #deferInherited: boolean;
  /** Inherited datagram sockets are bound but not read until {@link ListenerSet.activate}. */
  #deferDatagrams: boolean;
  readonly #byName: boolean;
  readonly #retryAddressInUseMs: number;
  /** Names whose listen() is under way. */
  readonly #claiming = new Set<string>();
  /** Sockets of servers the app closed, by listener name (see the class comment). */
  readonly #held = new Map<string, HeldListener>();
  readonly #holdMs: number;
  /** Servers whose close() is watched. */
  readonly #closeWatched = new WeakSet<net.Server>();
  /** Session-ticket keys for the TLS servers that listen under these names (see listeners/ticket-keys.ts). */
  readonly #ticketKeys: TicketKeys;
  /** Set by {@link ListenerSet.stopAccepting}: the generation is leaving, nothing is held any more. */
  #retired = false;
  /** The datagram (UDP) listeners: same pool, same names, their own file. */
  readonly #datagrams: DatagramListeners;

  /**
   * `onServer` is called for each server before it starts accepting (connection tracking).
   * With `deferInherited`, a server given an inherited listener starts accepting only at
   * {@link ListenerSet.activate}: a successor must not take connections from the shared
   * socket before it is ready, or a successor that crashes before ready would lose them.
   * With `byName`, an inherited listener is claimed by its name whatever address
   * listen() asks for: a supervisor's config, not the app, decides the address;
   * a listen() or listenDatagram() whose name is not inherited takes the
   * inherited socket of its address (an unmodified app under the supervisor).
   * With `retryAddressInUseMs`, a fresh TCP bind that fails with EADDRINUSE is
   * tried again (every 50 ms) for that long: a successor whose predecessor died
   * before handing its listeners over binds ports the dying process may still
   * hold for a moment.
   * `holdMs`: how long a closed server's socket is held for a re-listen.
   * `ticketKeys`: session-ticket keys by listener name (the predecessor's, or
   * a supervisor's), set on a TLS server that listens under that name before
   * it accepts, so the sessions of the previous generation resume here.
   * With `deferDatagrams` (default: `deferInherited`), an inherited UDP socket
   * is bound at once but read only from {@link ListenerSet.activate} on (the
   * predecessor reads it until then).
   */
  constructor(
    pool: InheritedListener[],
    onServer: (server: net.Server) => void,
    options: {
      deferInherited?: boolean;
      deferDatagrams?: boolean;
      byName?: boolean;
      retryAddressInUseMs?: number;
      holdMs?: number;
      ticketKeys?: TicketKeys;
    } = {},
  ) {
    this.#pool = pool;
    this.#onServer = onServer;
    this.#deferInherited = options.deferInherited ?? false;
    this.#byName = options.byName ?? false;
    this.#holdMs = options.holdMs ?? RELISTEN_HOLD_MS;
    this.#retryAddressInUseMs = options.retryAddressInUseMs ?? 0;
    this.#ticketKeys = options.ticketKeys ?? new Map();
    this.#deferDatagrams = options.deferDatagrams ?? this.#deferInherited;
    this.#datagrams = new DatagramListeners(pool, () => this.#deferDatagrams, this.#byName);
  }

  /**
   * The listener called `name`, if set up — or, while the app has closed its
   * server and not listened again yet, that server's listener (connections
   * migrated to it are served by the app's handlers as before).
   */
  get(name: string): Listener | undefined {
    return this.#listeners.get(name) ?? this.#held.get(name)?.listener;
  }

  /** The listener whose server is `server`, if any (one lookup: asked per connection while migrating). */
  of(server: net.Server): Listener | undefined {
    return this.#byServer.get(server);
  }

  #add(listener: Listener): void {
    this.#listeners.set(listener.name, listener);
    this.#byServer.set(listener.server, listener);
  }

  /** The listeners in the order they were set up. */
  get all(): readonly Listener[] {
    return [...this.#listeners.values()];
  }

  /** The datagram listeners in the order they were set up. */
  get datagrams(): readonly DatagramListener[] {
    return this.#datagrams.all;
  }

  /**
   * Binds `socket` to the datagram listener called `name`: the inherited UDP
   * socket of that name when there is one, else a fresh bind (see
   * DatagramListeners#listen). Names are shared with stream listeners: one
   * name, one listener. With `deferDatagrams`, an inherited socket is bound
   * (the app may send) but read only from {@link ListenerSet.activate} on.
   */
  async listenDatagram(name: string, address: DatagramAddress, socket: dgram.Socket): Promise<DatagramListener> {
    if (this.#listeners.has(name) || this.#claiming.has(name) || this.#datagrams.has(name)) {
      throw new BatonError('ERR_BATON_LISTENER_CONFLICT', `listener '${name}' is already set up in this generation`);
    }
    this.#claiming.add(name);
    try {
      return await this.#datagrams.listen(name, address, socket);
    } finally {
      this.#claiming.delete(name);
    }
  }

  /** Inherited listeners not claimed (yet). */
  get unclaimed(): readonly InheritedListener[] {
    return this.#pool;
  }

  /**
   * Makes `server` accept on the listener called `name`: the inherited fd of
   * that name (or, for unnamed systemd fds, of that address) when there is one,
   * else a fresh bind. A port-0 request takes the inherited listener of its name
   * whatever its port, so the port survives upgrades.
   */
  async listen(name: string, address: ListenAddress, server: net.Server): Promise<Listener> {
    // Claimed synchronously: two listen() calls of one name in the same tick must conflict,
    // not race to a fresh bind.
    if (this.#listeners.has(name) || this.#claiming.has(name) || this.#datagrams.has(name)) {
      throw new BatonError('ERR_BATON_LISTENER_CONFLICT', `listener '${name}' is already set up in this generation`);
    }
    if (server.listening) {
      throw new BatonError('ERR_BATON_LISTENER_CONFLICT', `listener '${name}': the server is already listening`);
    }
    this.#claiming.add(name);
    try {
      return await this.#listen(name, address, server);
    } finally {
      this.#claiming.delete(name);
    }
  }

  async #listen(name: string, address: ListenAddress, server: net.Server): Promise<Listener> {
    this.#onServer(server);
    this.#watchClose(server);
    const held = this.#takeHeld(name, address);
    const index = held ? -1 : this.#findInherited(name, address);
    let origin: ListenerOrigin;
    if (held || index >= 0) {
      const inherited = held?.inherited ?? this.#pool.splice(index, 1)[0]!;
      origin = held?.origin ?? 'inherited';
      // Keys go by the socket's own name (a supervisor's listener claimed by address has the config's).
      this.#setTicketKeys(server, inherited.name ?? name, name);
      if (this.#deferInherited && (!held || held.deferred)) {
        this.#deferred.push({ server, inherited });
        const d = inherited.description;
        const listener: Listener =
          d.family === 'unix'
            ? { name, server, kind: 'unix', address: d.path ?? '', port: undefined, origin }
            : { name, server, kind: 'tcp', address: d.address ?? '', port: d.port, origin };
        this.#add(listener);
        return listener;
      }
      await adopt(server, inherited);
    } else {
      this.#setTicketKeys(server, name, name);
      await bindFresh(server, address, this.#retryAddressInUseMs);
      origin = 'bound';
    }
    const bound = server.address();
    const listener: Listener =
      typeof bound === 'string' || bound === null
        ? { name, server, kind: 'unix', address: 'path' in address ? address.path : (bound ?? ''), port: undefined, origin }
        : { name, server, kind: 'tcp', address: bound.address, port: bound.port, origin };
    this.#add(listener);
    return listener;
  }

  /** Sets the ticket keys known for `socketName` (else for `name`) on `server`, before it accepts. */
  #setTicketKeys(server: net.Server, socketName: string, name: string): void {
    applyTicketKeys(server, this.#ticketKeys.get(socketName) ?? this.#ticketKeys.get(name));
  }

  /** The held socket of `name`, if it listens where `address` asks: taken out of the hold. */
  #takeHeld(name: string, address: ListenAddress): { inherited: InheritedListener; origin: ListenerOrigin; deferred: boolean } | undefined {
    const held = this.#held.get(name);
    if (!held || !addressMatches(held.description, address, true)) return undefined;
    this.#held.delete(name);
    clearTimeout(held.timer);
    return { inherited: { name, fd: held.fd, description: held.description }, origin: held.listener.origin, deferred: held.deferred };
  }

  /**
   * Watches the app's `server.close()`: it releases the listener's name and
   * holds its socket (see the class comment). baton's own stop goes through
   * `net.Server.prototype.close` directly and is not seen here.
   */
  #watchClose(server: net.Server): void {
    if (this.#closeWatched.has(server)) return;
    this.#closeWatched.add(server);
    const close = server.close; // the server's own (http's, https's, net's …), from its prototype
    const release = (l: Listener, cb: ((err?: Error) => void) | undefined) => this.#release(l, close, cb);
    const byServer = this.#byServer;
    const listeners = this.#listeners;
    server.close = function (this: net.Server, cb?: (err?: Error) => void) {
      const l = byServer.get(this);
      if (!l || listeners.get(l.name) !== l) return close.call(this, cb);
      return release(l, cb);
    } as typeof server.close;
  }

  #release(l: Listener, close: net.Server['close'], cb: ((err?: Error) => void) | undefined): net.Server {
    // Draining: baton stopped accepting already and the drain owns the connections (http's
    // close would cut idle ones that are about to migrate); the name stays for a rollback.
    if (this.#retired) return net.Server.prototype.close.call(l.server, cb);
    this.#listeners.delete(l.name); // #byServer keeps it: its connections still belong to this listener
    const deferredAt = this.#deferred.findIndex((d) => d.server === l.server);
    const deferred = deferredAt >= 0 ? this.#deferred.splice(deferredAt, 1)[0]!.inherited : undefined;
    const fd = deferred ? deferred.fd : serverFd(l.server);
    if (fd === undefined || l.kind !== 'tcp') {
      if (deferred) closeQuietly(deferred.fd);
      return close.call(l.server, cb);
    }
    const kept = deferred ? deferred.fd : dupFd(fd);
    const timer = setTimeout(() => this.#dropHeld(l.name), this.#holdMs);
    timer.unref();
    this.#held.set(l.name, { fd: kept, description: describeSocket(kept), listener: l, deferred: deferred !== undefined, timer });
    if (deferred) process.nextTick(() => cb?.());
    else net.Server.prototype.close.call(l.server, cb);
    return l.server;
  }

  /** The hold of `name` ended without a re-listen: the socket closes, as the app asked. */
  #dropHeld(name: string, closeIdle = true): void {
    const held = this.#held.get(name);
    if (!held) return;
    this.#held.delete(name);
    clearTimeout(held.timer);
    closeQuietly(held.fd);
    const server = held.listener.server as net.Server & { closeIdleConnections?: () => void };
    if (closeIdle && !server.listening) server.closeIdleConnections?.();
  }

  /**
   * Makes every deferred server accept on its inherited listener, and ends
   * deferral for later listen() calls. Call when the generation becomes ready.
   */
  async activate(): Promise<void> {
    this.#deferInherited = false;
    this.#deferDatagrams = false;
    this.#datagrams.activate();
    for (const { server, inherited } of this.#deferred.splice(0)) await adopt(server, inherited);
  }

  /** The manifest entries and fds of every listener (stream, then datagram), in the same order; the fds are lent. */
  manifest(): { entries: ListenerEntry[]; fds: number[] } {
    const entries: ListenerEntry[] = [];
    const fds: number[] = [];
    for (const l of this.#listeners.values()) {
      const fd = serverFd(l.server);
      if (fd === undefined) continue; // stopped accepting already
      entries.push(
        l.kind === 'tcp'
          ? { name: l.name, kind: 'tcp', address: l.address, port: l.port! }
          : { name: l.name, kind: 'unix', address: l.address },
      );
      fds.push(fd);
    }
    // A socket held for a re-listen goes too: the successor's listen() of that name must find it.
    for (const [name, h] of this.#held) {
      const d = h.description;
      entries.push({ name, kind: 'tcp', address: d.address ?? '', port: d.port ?? 0 });
      fds.push(h.fd);
    }
    const datagrams = this.#datagrams.manifest();
    entries.push(...datagrams.entries);
    fds.push(...datagrams.fds);
    return { entries, fds };
  }

  /**
   * Stops accepting on every listener without touching open connections
   * (`net.Server#close`, not `http.Server#close`, which since Node 19 also
   * closes idle keep-alive connections). Closes only this process's copy of each
   * listening fd: a successor holding its own copy keeps the socket open, so no
   * connection is refused. Sockets held for a re-listen are closed (the
   * successor has its own copies). Datagram sockets stop reading but stay
   * open (the app may still send replies) until {@link ListenerSet.closeDatagrams}.
   */
  stopAccepting(): void {
    this.#retired = true;
    this.#datagrams.pause();
    for (const name of [...this.#held.keys()]) this.#dropHeld(name, false); // their connections drain or migrate
    for (const l of this.#listeners.values()) {
      if (l.server.listening) net.Server.prototype.close.call(l.server);
    }
  }

  /**
   * Duplicates every listening fd, so the listening sockets outlive
   * {@link ListenerSet.stopAccepting}: for a rollback if the successor dies
   * while this generation drains. The caller owns the fds until it passes them
   * to {@link ListenerSet.resumeAccepting} or closes them.
   */
  reserve(): { server: net.Server; fd: number }[] {
    const out: { server: net.Server; fd: number }[] = [];
    for (const l of this.#listeners.values()) {
      const fd = serverFd(l.server);
      if (fd !== undefined) out.push({ server: l.server, fd: dupFd(fd) });
    }
    return out;
  }

  /** Makes each server accept again on its reserved fd (which it then owns), and the datagram sockets read again. */
  async resumeAccepting(reserved: { server: net.Server; fd: number }[]): Promise<void> {
    this.#retired = false;
    this.#datagrams.resume();
    for (const { server, fd } of reserved) {
      try {
        await listenOn(server, { fd });
      } catch (err) {
        closeQuietly(fd);
        throw err;
      }
    }
  }

  /**
   * Closes the datagram sockets (the drain ended: no reply is still to be
   * sent). Closes this process's fds only: a successor's copies keep each
   * kernel socket and its receive queue.
   */
  closeDatagrams(): void {
    this.#datagrams.close();
  }

  /** Closes inherited fds no listener claimed (tableflip does the same after Ready). */
  closeUnclaimed(): void {
    for (const l of this.#pool.splice(0)) closeQuietly(l.fd);
  }

  /** Closes the fds of listeners still deferred (a takeover that failed before ready), and the datagram sockets. */
  closeDeferred(): void {
    this.#datagrams.close();
    for (const { inherited } of this.#deferred.splice(0)) closeQuietly(inherited.fd);
  }

  #findInherited(name: string, address: ListenAddress): number {
    const byName = this.#pool.findIndex((l) => l.name === name && l.description.type === 'stream');
    if (byName >= 0 && this.#byName) return byName;
    // Under a supervisor, an app that names no listener (zero-code adoption) gets
    // the master's listener on the address it asks for.
    if (byName < 0 && this.#byName && ('path' in address || address.port !== 0)) {
      const byAddress = this.#pool.findIndex((l) => l.description.type === 'stream' && addressMatches(l.description, address, true));
      if (byAddress >= 0) return byAddress;
    }
    if (byName >= 0) return addressMatches(this.#pool[byName]!.description, address, true) ? byName : -1;
    return this.#pool.findIndex(
      (l) => l.name === undefined && l.description.type === 'stream' && addressMatches(l.description, address, false),
    );
  }
}

/** The fd of a listening server (Node keeps it on its handle: src/native/internals.ts). */
export function serverFd(server: net.Server): number | undefined {
  return handleFd(server);
}

/**
 * Whether the socket described by `d` listens where `address` asks. A port-0
 * request matches any port only for a listener found by name (`named`): the
 * port a previous generation was given.
 */
export function addressMatches(d: SocketDescription, address: ListenAddress, named: boolean): boolean {
  if ('path' in address) return d.family === 'unix' && d.path === address.path;
  if (d.family === 'unix') return false;
  if (address.port !== 0 && d.port !== address.port) return false;
  if (address.port === 0 && !named) return false;
  const host = address.host;
  if (host === undefined || host === d.address) return true;
  if (host === 'localhost') return d.address === '127.0.0.1' || d.address === '::1';
  return false;
}

async function adopt(server: net.Server, inherited: InheritedListener): Promise<void> {
  try {
    await listenOn(server, { fd: inherited.fd });
  } catch (err) {
    closeQuietly(inherited.fd);
    throw err;
  }
}

/** `options` is a ListenOptions or `{ fd }` (Node's handle form, which its types leave out). */
function listenOn(server: net.Server, options: net.ListenOptions | { fd: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

/** Pause between two binds of a port still in use (see `retryAddressInUseMs`). */
const BIND_RETRY_PAUSE_MS = 50;

async function bindFresh(server: net.Server, address: ListenAddress, retryAddressInUseMs = 0): Promise<void> {
  if (!('path' in address)) {
    const deadline = performance.now() + retryAddressInUseMs;
    for (;;) {
      try {
        await listenOn(server, { host: address.host, port: address.port });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || performance.now() >= deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, BIND_RETRY_PAUSE_MS));
      }
    }
  }
  try {
    await listenOn(server, { path: address.path });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !isStaleUnixSocket(address.path)) throw err;
    // A socket file left by a process that died: nobody answers it, replace it.
    fs.unlinkSync(address.path);
    await listenOn(server, { path: address.path });
  }
}

/** True when `path` is a unix socket nobody listens on (ECONNREFUSED). */
export function isStaleUnixSocket(path: string): boolean {
  try {
    const found = probeUnixSocket(path);
    if (found.kind === 'running') found.channel.close();
    return found.kind === 'stale';
  } catch {
    return false; // cannot tell (EACCES, …): leave the file alone
  }
}
