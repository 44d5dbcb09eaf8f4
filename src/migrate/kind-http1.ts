/**
 * Migration kind `http1`: connections of plain HTTP/1.1 servers
 * (`http.Server`, not HTTPS: TLS session state cannot leave the process),
 * moved between two requests.
 *
 * Predecessor: a connection moves when Node's own parser list says no byte
 * of a next request was parsed and no response is pending (http1-idle.ts);
 * one busy at the drain moves right after its response (which keeps
 * `Connection: keep-alive`) when `migrateAfterResponse`. The list is looked
 * at once per event-loop turn, whatever the number of connections; the idle
 * connections it finds leave {@link LEAVE_PER_TURN} per turn, so that batches
 * go out, and acknowledgements come in, while the rest are frozen (the
 * successor adopts one batch while this process prepares the next).
 * Successor: the connection is parked as a bare fd (parking.ts) until its
 * client speaks. Without Node's list (another Node release) this kind accepts
 * no server: its connections drain (src/native/internals.ts warns at start).
 */
import http from 'node:http';
import type net from 'node:net';
import { http1ConnectionsList } from '../native/internals.js';
import { idleHttp1Sockets } from './http1-idle.js';
import { refuse, type DepartureHost, type Departures, type MigrationKind } from './kind.js';

/**
 * Idle connections offered per event-loop turn (one batch's worth at the
 * default migrateBatchSize). Between two turns the event loop writes what the
 * channel could not take at once and reads acknowledgements: offering ten
 * thousand connections in one turn would hold every frame after the first
 * few in this process until the last one was frozen.
 */
export const LEAVE_PER_TURN = 1024;

/** An idle connection found by a look, offered on a later turn if it is still idle then. */
interface Idle {
  socket: net.Socket;
  server: net.Server;
  name: string | undefined;
  /** `socket.bytesRead` when the look found it idle: more read since means a request may have begun. */
  bytesRead: number;
}

/** The HTTP/1.1 keep-alive kind (see the module comment). */
export const http1Kind: MigrationKind = {
  name: 'http1',
  description: 'HTTP/1.1 keep-alive connections',
  accepts: (server) => server instanceof http.Server && http1ConnectionsList(server) !== undefined,
  depart: (host) => new Http1Departures(host),
  adopt(fd, entry, server, host) {
    // A listener whose server changed protocol in this version cannot take it: it stays and drains there.
    if (!(server instanceof http.Server)) {
      return refuse(fd, `listener '${entry.listener}' is not served by an HTTP/1.1 server here`);
    }
    // Idle between two requests: parked until the client speaks (see Parking).
    host.park(fd, server, entry.listener);
    return { adopted: true };
  },
};

class Http1Departures implements Departures {
  readonly #host: DepartureHost;
  /** Connections to look at for a request boundary on the next turn, by server. */
  readonly #pending = new Map<net.Server, Set<net.Socket>>();
  /** Found idle, not offered yet (LEAVE_PER_TURN per turn), oldest first. */
  #idle: Idle[] = [];
  #leaving = false;
  #stopped = false;
  readonly afterResponse: boolean;

  constructor(host: DepartureHost) {
    this.#host = host;
    this.afterResponse = host.afterResponse;
  }

  offer(socket: net.Socket, server: net.Server): boolean {
    if (this.#stopped) return false;
    const first = this.#pending.size === 0;
    const pending = this.#pending.get(server);
    if (pending) pending.add(socket);
    else this.#pending.set(server, new Set([socket]));
    // One look at Node's parser list per turn, whatever the number of connections.
    if (first) setImmediate(() => this.#look());
    return true;
  }

  /**
   * The first look at once: connections idle now start leaving without
   * waiting for a turn. Parked connections (adopted, not used since) leave
   * as the bare fds they are.
   */
  start(): void {
    const { emigration, parking } = this.#host;
    parking.takeAll((fd, name, release, giveBack) => emigration.offerFd(fd, name, http1Kind.name, release, giveBack));
    this.#look();
  }

  stop(): void {
    this.#stopped = true;
    this.#pending.clear();
    this.#idle = [];
  }

  #look(): void {
    if (this.#stopped) return;
    const byServer = [...this.#pending];
    this.#pending.clear();
    for (const [server, sockets] of byServer) {
      const idle = idleHttp1Sockets(server);
      const name = this.#host.nameOf(server);
      for (const socket of sockets) {
        // Not idle: a request is being received or answered; its response's
        // 'finish' brings it back here (afterResponse), or it gets Connection: close.
        if (!idle.has(socket) || socket.destroyed) continue;
        this.#idle.push({ socket, server, name, bytesRead: socket.bytesRead });
      }
    }
    this.#leave();
  }

  /** Offers up to LEAVE_PER_TURN of the idle connections found, the rest on the next turns. */
  #leave(): void {
    if (this.#stopped || this.#idle.length === 0) return;
    const now = this.#idle.length > LEAVE_PER_TURN ? this.#idle.splice(0, LEAVE_PER_TURN) : this.#idle.splice(0);
    for (const { socket, server, name, bytesRead } of now) {
      if (socket.destroyed) continue;
      // Bytes read since the look (libuv hands them to the parser as it reads them): a request
      // may have begun, and the look's verdict no longer holds. A fresh look decides.
      if (socket.bytesRead !== bytesRead) {
        this.offer(socket, server);
        continue;
      }
      if (name === undefined || !this.#host.emigration.offer(socket, name, http1Kind.name)) this.#host.keep(socket);
    }
    if (this.#idle.length > 0 && !this.#leaving) {
      this.#leaving = true;
      setImmediate(() => {
        this.#leaving = false;
        this.#leave();
      });
    }
  }
}
