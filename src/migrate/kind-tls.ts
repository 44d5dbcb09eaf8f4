/**
 * Migration kind `tls`: connections of TLS servers (`https.Server`,
 * `tls.Server`, `http2.createSecureServer`). None can leave the process:
 * OpenSSL keeps each connection's keys in user space. So this kind moves
 * nothing; its departures close each connection gracefully at its boundary
 * as soon as the drain into a ready successor starts, and the client
 * reconnects there (resuming its TLS session with the ticket keys the
 * successor got, docs/tls.md) instead of holding the drain open:
 *
 * - HTTPS/1.1 between two requests: closed at once (close_notify, FIN), once
 *   the kernel holds no byte of a next request; one answering a request: the
 *   tracker answers `Connection: close` when the response has not started
 *   (this kind moves nothing after a response), and one that had started
 *   with keep-alive is closed right after it finished. A connection that
 *   has not sent its first request yet is left alone (that request is on its
 *   way): it gets `Connection: close`.
 * - Upgraded over TLS (Node freed the HTTP parser): a `ws` WebSocket is
 *   closed with 1012 after the answers to what it had received
 *   (websocket.ts); any other protocol — and a `tls.Server`'s own protocol —
 *   stops being read, and once what the app wrote has flushed and it wrote
 *   nothing more for two event-loop turns (bounded by `migrateTimeoutMs`) it
 *   gets close_notify and FIN (`end()`); bytes that arrive later are not
 *   given to the app, which could not answer them.
 * - HTTP/2 over TLS: no `offerSession`, so the tracker sends each session its
 *   GOAWAY at the start of the drain.
 *
 * WebSockets of the ws servers the WebSocket kind follows are its own (it
 * closes a wss one with 1012 too). With `closeUpgraded: false`
 * ({@link DepartureHost.closeUnmovable}) this kind takes nothing: the
 * connections drain as before (idle keep-alive at `keepAliveTimeout`,
 * upgraded ones at `drainTimeoutMs`). An HTTP/2 server's HTTP/1.1 fallback
 * (`allowHTTP1`) has no connection list to tell idle connections: those drain
 * as before too, as does a connection still in its TLS handshake.
 *
 * The tracker follows a TLS connection by its TCP socket; the TLS socket on
 * it (which carries the HTTP parser, the WebSocket, the app's protocol) is
 * recorded at `'secureConnection'` ({@link MigrationKind.prepare}): one set
 * entry per connection, nothing per request. It is listed first in the
 * registry, so a TLS listener registered with `migrateSockets` is not moved
 * as raw bytes its successor could not decrypt. The successor never gets
 * one: `adopt` refuses (for a peer that sent one anyway).
 */
import type http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import tls from 'node:tls';
import { loadBinding } from '../native/binding.js';
import { handleFd, hasHttpParser, pendingResponse, webSocketOn } from '../native/internals.js';
import { idleHttp1Sockets } from './http1-idle.js';
import { refuse, type DepartureHost, type Departures, type MigrationKind } from './kind.js';
import { resumeReading, stopReading } from './socket-control.js';
import { closeWebSocket } from './websocket.js';

/** The TLS sockets of each prepared server that are open and past their handshake. */
const secured = new WeakMap<net.Server, Set<tls.TLSSocket>>();

/** The TLS kind (see the module comment). */
export const tlsKind: MigrationKind = {
  name: 'tls',
  description: 'connections of TLS servers (they cannot leave: closed gracefully at their boundary)',
  accepts: (server) => server instanceof tls.Server,
  prepare(server) {
    if (!(server instanceof tls.Server) || secured.has(server)) return;
    const open = new Set<tls.TLSSocket>();
    secured.set(server, open);
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
    });
  },
  depart: (host) => new TlsDepartures(host),
  adopt: (fd) => refuse(fd, 'a TLS connection cannot move: its keys stay in the process that made them'),
};

class TlsDepartures implements Departures {
  readonly #host: DepartureHost;
  /** Servers whose connections to look at on the next look. */
  readonly #servers = new Set<net.Server>();
  /** TLS sockets being closed, or waiting for their response to finish. */
  readonly #taken = new WeakSet<tls.TLSSocket>();
  #started = false;
  #stopped = false;

  constructor(host: DepartureHost) {
    this.#host = host;
  }

  offer(_socket: net.Socket, server: net.Server): boolean {
    // closeUpgraded: false — it drains as before.
    if (!this.#host.closeUnmovable) return false;
    const first = this.#servers.size === 0;
    this.#servers.add(server);
    // A connection arriving during the drain: one look per turn, whatever their number.
    if (this.#started && first) setImmediate(() => this.#look());
    return true;
  }

  start(): void {
    this.#started = true;
    this.#look();
  }

  stop(): void {
    this.#stopped = true;
    this.#servers.clear();
  }

  #look(): void {
    const servers = [...this.#servers];
    this.#servers.clear();
    for (const server of servers) {
      // Node's list tells HTTPS/1.1 connections between two requests (empty for an HTTP/2 server's fallback).
      const idle = server instanceof https.Server ? idleHttp1Sockets(server) : new Set<net.Socket>();
      for (const socket of secured.get(server) ?? []) this.#close(socket, server, idle);
    }
  }

  /** Closes `socket` at its boundary, or arranges to once it reaches one. */
  #close(socket: tls.TLSSocket, server: net.Server, idle: Set<net.Socket>): void {
    if (this.#stopped || socket.destroyed || socket.writableEnded || this.#taken.has(socket)) return;
    // An HTTP/2 session: the tracker's GOAWAY. A followed WebSocket: the WebSocket kind's.
    if (socket.alpnProtocol === 'h2' || this.#host.websockets.claims(socket)) return;
    const http = server instanceof https.Server || isHttp2Server(server);
    if (http && hasHttpParser(socket)) return this.#closeHttp1(socket, server, idle);
    this.#taken.add(socket);
    const ws = webSocketOn(socket);
    if (ws) closeWebSocket(ws, this.#host.timeoutMs);
    else endAfterAnswers(socket, this.#host.timeoutMs);
  }

  #closeHttp1(socket: tls.TLSSocket, server: net.Server, idle: Set<net.Socket>): void {
    const res = pendingResponse(socket);
    if (res) {
      // Answering: once the response finished (Node has attached a pipelined next one by then), look again.
      this.#taken.add(socket);
      res.once('finish', () =>
        setImmediate(() => {
          this.#taken.delete(socket);
          if (server instanceof https.Server) this.#close(socket, server, idleHttp1Sockets(server));
        }),
      );
      return;
    }
    // No request yet (it is on its way), or part of one received: its response carries Connection: close.
    if (socket.bytesRead === 0 || !idle.has(socket) || kernelHolds(socket)) return;
    this.#taken.add(socket);
    socket.end();
  }
}

/** An HTTP/2 secure server (Node's, which has `updateSettings`): its HTTP/1.1 fallback connections have a parser. */
function isHttp2Server(server: net.Server): boolean {
  return typeof (server as Partial<http2.Http2SecureServer>).updateSettings === 'function';
}

let peekBuffer: Buffer | undefined;

/**
 * True when the kernel holds bytes the connection has not read yet (the start
 * of a next request, most likely): closing now would lose that request.
 */
function kernelHolds(socket: net.Socket): boolean {
  const fd = handleFd(socket);
  if (fd === undefined) return false;
  peekBuffer ??= Buffer.alloc(1);
  try {
    return loadBinding().peek(fd, peekBuffer) > 0;
  } catch {
    return false;
  }
}

/**
 * Ends a connection of a protocol baton does not know once the app answered
 * what it had received: reading stops (what arrives from now on stays unseen),
 * and when what the app wrote has flushed and it wrote nothing for two turns
 * (at most `timeoutMs`) close_notify and FIN follow. Reading resumes then for
 * the client's own close only: later bytes are dropped, not given to an app
 * that could no longer answer them.
 */
function endAfterAnswers(socket: net.Socket, timeoutMs: number): void {
  stopReading(socket);
  const deadline = performance.now() + timeoutMs;
  let written = -1;
  let quiet = 0;
  const check = () => {
    if (socket.destroyed || socket.writableEnded) return;
    quiet = socket.writableLength === 0 && socket.bytesWritten === written ? quiet + 1 : 0;
    written = socket.bytesWritten;
    if (quiet < 2 && performance.now() < deadline) return void setImmediate(check);
    const emit = socket.emit as (this: net.Socket, event: string | symbol, ...args: unknown[]) => boolean;
    socket.emit = function (this: net.Socket, event: string | symbol, ...args: unknown[]): boolean {
      return event === 'data' ? false : emit.call(this, event, ...args);
    };
    socket.end();
    resumeReading(socket);
    socket.resume();
  };
  setImmediate(check);
}
