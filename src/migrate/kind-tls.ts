/**
 * Migration kind `tls`: connections of TLS servers (`https.Server`,
 * `tls.Server`, `http2.createSecureServer`). None can leave the process:
 * OpenSSL keeps each connection's keys in user space. So this kind moves
 * nothing; its departures close each connection gracefully at its boundary
 * as soon as the drain into a ready successor starts, and the client
 * reconnects there (resuming its TLS session with the ticket keys the
 * successor got, docs/tls.md) instead of holding the drain open:
 *
 * - HTTPS/1.1 between two requests: closed (close_notify, FIN) once it stayed
 *   quiet for a second ({@link QUIET_MS}: a client under load sends its next
 *   request sooner, and that request is answered with `Connection: close`)
 *   and the kernel holds no byte of a next request. One answering a request:
 *   the tracker answers `Connection: close` when the response has not
 *   started (this kind moves nothing after a response); one that had started
 *   with keep-alive gets its quiet second after it finished.
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

/**
 * How long an HTTPS/1.1 connection must stay quiet — no byte read — before it
 * is closed as idle. A client under load sends its next request within a
 * round trip of the last response: that request gets `Connection: close`, and
 * the connection ends after its response without a race. Closing a
 * connection idle at the very instant the drain looks would race that request
 * (it would fail with "other side closed"); after a quiet second the client
 * is idle in earnest, the same bet a server's `keepAliveTimeout` makes.
 */
const QUIET_MS = 1_000;

class TlsDepartures implements Departures {
  readonly #host: DepartureHost;
  /** Servers whose connections to look at on the next look. */
  readonly #servers = new Set<net.Server>();
  /** TLS sockets being closed, or waiting for their response to finish or their quiet period to end. */
  readonly #taken = new WeakSet<tls.TLSSocket>();
  /** HTTPS/1.1 connections in their quiet period (one timer for all), with their server and the bytes read when it began. */
  readonly #quiet = new Map<tls.TLSSocket, { server: net.Server; read: number }>();
  #quietTimer: NodeJS.Timeout | undefined;
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
    this.#quiet.clear();
    clearTimeout(this.#quietTimer);
  }

  #look(): void {
    const servers = [...this.#servers];
    this.#servers.clear();
    for (const server of servers) for (const socket of secured.get(server) ?? []) this.#close(socket, server);
  }

  /** Closes `socket` at its boundary, or arranges to once it reaches one. */
  #close(socket: tls.TLSSocket, server: net.Server): void {
    if (this.#stopped || socket.destroyed || socket.writableEnded || this.#taken.has(socket)) return;
    // An HTTP/2 session: the tracker's GOAWAY. A followed WebSocket: the WebSocket kind's.
    if (socket.alpnProtocol === 'h2' || this.#host.websockets.claims(socket)) return;
    const http = server instanceof https.Server || isHttp2Server(server);
    this.#taken.add(socket);
    if (http && hasHttpParser(socket)) return this.#closeHttp1(socket, server);
    const ws = webSocketOn(socket);
    if (ws) closeWebSocket(ws, this.#host.timeoutMs);
    else endAfterAnswers(socket, this.#host.timeoutMs);
  }

  /** An HTTPS/1.1 connection: after the response under way, if any; then once quiet for {@link QUIET_MS}. */
  #closeHttp1(socket: tls.TLSSocket, server: net.Server): void {
    const res = pendingResponse(socket);
    if (res) {
      // Node has attached a pipelined next response by the turn after 'finish': look again then.
      res.once('finish', () => setImmediate(() => this.#closeHttp1(socket, server)));
      return;
    }
    this.#quiet.set(socket, { server, read: socket.bytesRead });
    this.#quietTimer ??= setTimeout(() => this.#endQuiet(), QUIET_MS);
  }

  /**
   * The quiet period is over: connections that read nothing during it, sit
   * between two requests in Node's list and have no byte waiting in the
   * kernel get close_notify and FIN. The others got a request meanwhile,
   * answered with `Connection: close`, after which Node closes them.
   */
  #endQuiet(): void {
    this.#quietTimer = undefined;
    const quiet = [...this.#quiet];
    this.#quiet.clear();
    const idleOf = new Map<net.Server, Set<net.Socket>>();
    for (const [socket, { server, read }] of quiet) {
      if (this.#stopped || socket.destroyed || socket.writableEnded || socket.bytesRead !== read) continue;
      if (pendingResponse(socket)) {
        this.#closeHttp1(socket, server);
        continue;
      }
      // Node's list tells a connection between two requests (an HTTP/2 server's HTTP/1.1 fallback has none).
      if (!idleOf.has(server)) idleOf.set(server, server instanceof https.Server ? idleHttp1Sockets(server) : new Set());
      if (idleOf.get(server)!.has(socket) && !kernelHolds(socket)) socket.end();
    }
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
