/**
 * The master's listening sockets — TCP, unix and UDP: bound (or inherited, or
 * adopted from a worker) once, held open and never accepted on (or read) by
 * the master itself. Workers inherit them and all accept on (read) the same
 * sockets, as nginx's workers do.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { BatonError } from '../core/errors.js';
import type { InheritedListener } from '../handover/inherit.js';
import { loadBinding } from '../native/binding.js';
import { closeQuietly, describeSocket, dupFd, type SocketDescription } from '../native/socket-info.js';
import { check } from '../native/system-error.js';
import { probeUnixSocket } from '../native/unix-channel.js';
import { DEFAULT_BACKLOG } from '../native/unix-listener.js';
import { addressMatches, serverFd } from '../listeners/listener-set.js';
import { datagramFd, datagramReceiving } from '../native/internals.js';
import { isDatagramConfig, type ListenerConfig } from './config.js';

/** A listening socket held by the master. The master owns `fd` (CLOEXEC) and closes it in {@link HeldListeners.close}. */
export interface HeldListener {
  readonly name: string;
  readonly fd: number;
  readonly description: SocketDescription;
  /** How the master got it: bound from the config, inherited, or adopted from a worker that bound it. */
  readonly origin: 'bound' | 'inherited' | 'adopted';
}

/** A listener as shown in status output. */
export interface ListenerStatus {
  name: string;
  address: string;
  port?: number;
  /** A UDP socket's type; absent for TCP and unix listeners. */
  type?: 'udp4' | 'udp6';
  origin: HeldListener['origin'];
}

/** The master's listeners, by name. */
export class HeldListeners {
  readonly #held: HeldListener[];

  private constructor(held: HeldListener[]) {
    this.#held = held;
  }

  /**
   * Claims inherited listeners and binds the rest, then closes inherited fds
   * nobody claimed. An inherited fd is claimed by name; an unnamed one (plain
   * systemd socket activation) by address. With `keepUnconfigured` (socket
   * activation), named inherited listeners absent from `wanted` are kept too:
   * the service manager, not the file, defines them.
   * On failure every fd taken so far is closed and the error names the listener.
   */
  static async open(
    wanted: Readonly<Record<string, ListenerConfig>>,
    inherited: InheritedListener[],
    keepUnconfigured: boolean,
    { sameAddress: requireSameAddress = false, adopted = [] }: { sameAddress?: boolean; adopted?: readonly string[] } = {},
  ): Promise<HeldListeners> {
    const held: HeldListener[] = [];
    const pool = [...inherited];
    try {
      for (const [name, address] of Object.entries(wanted)) {
        let i = pool.findIndex((l) => l.name === name && (!requireSameAddress || configMatches(l.description, address, true)));
        if (i < 0) i = pool.findIndex((l) => l.name === undefined && configMatches(l.description, address, false));
        if (i >= 0) {
          const [l] = pool.splice(i, 1);
          held.push({ name, fd: l!.fd, description: l!.description, origin: 'inherited' });
          continue;
        }
        const fd = await bindListener(name, address);
        held.push({ name, fd, description: describeSocket(fd), origin: 'bound' });
      }
      // Listeners an old master had adopted from its workers are not in the config: keep them.
      for (const name of adopted) {
        const i = pool.findIndex((l) => l.name === name);
        if (i < 0 || held.some((h) => h.name === name)) continue;
        const [l] = pool.splice(i, 1);
        held.push({ name, fd: l!.fd, description: l!.description, origin: 'adopted' });
      }
      if (keepUnconfigured) {
        for (const l of pool.splice(0)) {
          held.push({ name: l.name ?? `fd${l.fd}`, fd: l.fd, description: l.description, origin: 'inherited' });
        }
      }
    } catch (err) {
      for (const h of held) closeQuietly(h.fd);
      for (const l of pool) closeQuietly(l.fd);
      throw err;
    }
    for (const l of pool) closeQuietly(l.fd);
    return new HeldListeners(held);
  }

  /**
   * Takes over the listening socket of `server` — or the UDP socket —
   * received from a worker that bound it, as listener `name`: its fd is
   * duplicated and the server (socket) closed before the event loop could
   * accept (read) on it: Node hands a received handle over in the tick it
   * starts accepting (reading) in. False when `name` is held already.
   */
  adopt(name: string, server: net.Server | dgram.Socket): boolean {
    if (server instanceof dgram.Socket) datagramReceiving(server, false);
    const fd = server instanceof dgram.Socket ? datagramFd(server) : serverFd(server);
    if (this.#held.some((h) => h.name === name) || fd === undefined) {
      server.close();
      return false;
    }
    const copy = dupFd(fd);
    server.close();
    this.#held.push({ name, fd: copy, description: describeSocket(copy), origin: 'adopted' });
    return true;
  }

  /** Every listener, in config order. */
  get all(): readonly HeldListener[] {
    return this.#held;
  }

  /** Names of the listeners adopted from workers (a new master keeps them: see {@link HeldListeners.open}). */
  get adoptedNames(): string[] {
    return this.#held.filter((h) => h.origin === 'adopted').map((h) => h.name);
  }

  /** For status output. */
  status(): ListenerStatus[] {
    return this.#held.map((h) => {
      const d = h.description;
      if (d.family === 'unix') return { name: h.name, address: d.path ?? '', origin: h.origin };
      const type = d.type === 'dgram' ? { type: d.family === 'inet6' ? ('udp6' as const) : ('udp4' as const) } : {};
      return { name: h.name, address: d.address ?? '', port: d.port, ...type, origin: h.origin };
    });
  }

  /**
   * The listeners of a changed config (HUP): those whose name and address are
   * unchanged keep their socket (no connection is refused), new ones are
   * bound. Works on duplicates: on failure this set is untouched and the error
   * names the listener; on success the caller closes this set and uses the
   * returned one (the workers keep their own copies of removed listeners until
   * they retire).
   */
  async reopen(wanted: Readonly<Record<string, ListenerConfig>>): Promise<HeldListeners> {
    const copies: InheritedListener[] = this.#held.map((h) => ({ name: h.name, fd: dupFd(h.fd), description: h.description }));
    const next = await HeldListeners.open(wanted, copies, false, { sameAddress: true, adopted: this.adoptedNames });
    // Listeners inherited from systemd keep that origin.
    const origin = new Map(this.#held.map((h) => [h.name, h.origin]));
    return new HeldListeners(next.#held.map((h) => (h.origin === 'inherited' ? { ...h, origin: origin.get(h.name) ?? 'inherited' } : h)));
  }

  /** Closes every fd the master holds (workers keep their own copies). Idempotent. */
  close(): void {
    for (const h of this.#held.splice(0)) closeQuietly(h.fd);
  }
}

/**
 * Binds a listening socket without ever accepting on it. TCP goes through a
 * net.Server, whose fd is duplicated and whose handle is closed in the
 * 'listening' callback: that callback runs from process.nextTick, before the
 * event loop polls the new socket, so the server cannot have accepted a
 * connection. (Unix sockets are bound natively: closing a Node pipe server
 * unlinks its path.)
 */
export async function bindListener(name: string, address: ListenerConfig): Promise<number> {
  if (isDatagramConfig(address)) return bindDatagram(name, address.type, address.address, address.port);
  const backlog = address.backlog ?? DEFAULT_BACKLOG;
  if ('path' in address) {
    const found = probeUnixSocket(address.path);
    if (found.kind === 'running' || found.kind === 'busy') {
      if (found.kind === 'running') found.channel.close();
      throw new BatonError('ERR_BATON_LISTENER_CONFLICT', `listener '${name}': something already listens on ${address.path}`);
    }
    if (found.kind === 'stale') fs.rmSync(address.path, { force: true });
    return check(loadBinding().unixListen(address.path, backlog, address.mode ?? 0o666), 'listen', address.path);
  }
  const server = net.createServer();
  server.on('connection', (socket) => {
    // Unreachable by construction (see above); never keep a client hanging.
    socket.destroy();
  });
  return new Promise<number>((resolve, reject) => {
    server.once('error', (err) => reject(Object.assign(err, { message: `listener '${name}': ${err.message}` })));
    server.listen({ host: address.host, port: address.port, backlog }, () => {
      const fd = dupFd(serverFd(server)!);
      server.close();
      resolve(fd);
    });
  });
}

/**
 * Binds a UDP socket the master never reads: Node starts reading a bound
 * dgram socket (recvStart) just before it emits 'listening', synchronously,
 * so the 'listening' callback stops reading, duplicates the fd and closes the
 * socket before the event loop could poll it — every datagram waits in the
 * kernel for a worker. The caller owns the returned fd (CLOEXEC).
 */
async function bindDatagram(name: string, type: 'udp4' | 'udp6', address: string, port: number): Promise<number> {
  const socket = dgram.createSocket(type);
  return new Promise<number>((resolve, reject) => {
    socket.once('error', (err) => {
      try {
        socket.close();
      } catch {
        // ERR_SOCKET_DGRAM_NOT_RUNNING: nothing is open.
      }
      reject(Object.assign(err, { message: `listener '${name}': ${err.message}` }));
    });
    socket.bind({ address, port, exclusive: true }, () => {
      datagramReceiving(socket, false);
      const fd = datagramFd(socket);
      if (fd === undefined) {
        socket.close();
        reject(
          new BatonError('ERR_BATON_INTERNAL_MISSING', `listener '${name}': Node ${process.version} does not show a dgram socket's fd`),
        );
        return;
      }
      const copy = dupFd(fd);
      socket.close();
      resolve(copy);
    });
  });
}

/**
 * Whether the socket described by `d` is the config's listener `address`: a
 * UDP entry wants a datagram socket of its family, address and port (any port
 * for port 0 when `named`), the others a stream socket (see addressMatches).
 */
function configMatches(d: SocketDescription, address: ListenerConfig, named: boolean): boolean {
  if (!isDatagramConfig(address)) return d.type === 'stream' && addressMatches(d, address, named);
  if (d.type !== 'dgram' || d.family !== (address.type === 'udp4' ? 'inet' : 'inet6')) return false;
  if (address.port === 0 ? !named : d.port !== address.port) return false;
  return d.address === address.address;
}
