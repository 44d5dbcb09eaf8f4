import http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import type { ConnectionProtocol, DrainByProtocol } from '../core/drain-counts.js';
import type { Departures, Migrator } from '../migrate/kind.js';
import { closeUpgraded, prepareServer } from '../migrate/kinds.js';
import { hasHttpParser, pendingResponse, pendingResponses, probeNodeInternals } from '../native/internals.js';

/**
 * What happens to upgraded connections (WebSocket, any protocol after an HTTP
 * `Upgrade`) that do not migrate, during a drain into a ready successor.
 */
export interface UpgradedPolicy {
  /** True for an upgraded connection that migrates (a WebSocket of a registered server). */
  claims(socket: net.Socket): boolean;
  /**
   * True: close the others gracefully at once — a `ws` WebSocket with 1012
   * (Service Restart), anything else with a FIN once its writes flushed — so
   * their clients reconnect to the successor. False: they stay until
   * `drainTimeoutMs`, then are destroyed.
   */
  close: boolean;
  /** Bounds the wait for a closing WebSocket's pending answers (migrateTimeoutMs). */
  timeoutMs: number;
}

/** What a drain did, for reports and the Done frame. */
export interface DrainReport {
  /** Connections open when the drain began. */
  connections: number;
  /** Connections that ended by themselves (after `Connection: close`, GOAWAY or idle timeout). */
  drained: number;
  /** Connections destroyed at the drain timeout (long-lived ones, stuck requests). */
  forced: number;
  /** Connections handed to the successor alive (0 without migration). */
  migrated: number;
  /**
   * The same three by protocol ({@link ConnectionProtocol}; migrated by migration kind). Each
   * protocol's `drained` is its connections at the start less those cut and migrated, at least 0.
   */
  byProtocol: DrainByProtocol;
  durationMs: number;
}

/**
 * Follows every connection of the servers it tracks, so a generation can drain
 * them without cutting anything in flight.
 *
 * Drain policy (docs/architecture.md, "Drain"):
 * - HTTP/1.1: every response not yet started carries `Connection: close`, so
 *   the client's next request goes to a fresh connection (the successor).
 *   Responses already started finish as they are; the next request on that
 *   connection gets `Connection: close`. Idle keep-alive connections are NOT
 *   closed by the drain: they end at the server's own `keepAliveTimeout`, the
 *   timeout the server advertised in `Keep-Alive: timeout=…`, which well-behaved
 *   clients respect by closing first — closing them earlier races a request the
 *   client may be sending.
 * - HTTP/2: each session gets one GOAWAY naming the last stream it processed
 *   (`session.close()`); those streams finish, the client opens new streams on
 *   a new connection. Streams the client sent before it read the GOAWAY are
 *   refused (REFUSED_STREAM: not processed, safe to retry, RFC 9113 §8.7).
 *   No two-step GOAWAY: Node's nghttp2 ignores every new stream once it sent
 *   any GOAWAY, whatever its last stream id (see goAway()).
 * - Anything else (WebSocket after upgrade, raw TCP) stays open until the drain
 *   timeout, then is destroyed and counted as forced.
 *
 * Into a ready successor, upgraded connections that do not migrate are closed
 * gracefully at once ({@link UpgradedPolicy}), and the connections of TLS
 * servers by the `tls` migration kind's departures (migrate/kind-tls.ts),
 * idle HTTPS keep-alive ones included.
 *
 * With a {@link Migrator} (a successor that adopts connections), the
 * connections of a server some migration kind accepts (migrate/kinds.ts) are
 * offered to that kind's departures instead, which move each at its boundary
 * — an HTTP/1.1 keep-alive connection between two requests, an h2c session
 * between two streams, a raw connection once its writes flushed. What cannot
 * move drains as above.
 */
export class ConnectionTracker {
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #sessionServer = new WeakMap<http2.ServerHttp2Session, net.Server>();
  /**
   * The tracked servers. The drain's 'request' listener is installed on them
   * only while a drain runs (on an HTTP/2 server only when the app listens to
   * 'request' itself: `allowHTTP1` or the compat API): at steady state baton
   * does nothing per request.
   */
  readonly #servers: net.Server[] = [];
  /** Responses the current drain has dealt with (a pipelined one is reached twice: at its request and when it comes up). */
  #seen = new WeakSet<http.ServerResponse>();
  /** The drain's 'request' listener, prepended so it decides keep-alive before the app's handler writes headers. */
  readonly #onDrainRequest = (_req: unknown, res: unknown) => {
    if (res instanceof http.ServerResponse) this.#atDrain(res); // HTTP/2 compat API: GOAWAY handles it
  };
  /**
   * Without Node's HTTP connection list (another Node release) responses under
   * way cannot be read from Node at the drain, so they are recorded here as
   * they start, the only per-request work baton does (none on the Node
   * versions it supports).
   */
  readonly #legacy = probeNodeInternals().some((m) => m.internal === 'http.server.connections');
  readonly #inflight = new Set<http.ServerResponse>();
  /** One function shared by every response (`this` is the response), for the legacy recording. */
  readonly #forgetResponse = ((inflight) =>
    function (this: http.ServerResponse) {
      inflight.delete(this);
    })(this.#inflight);
  readonly #tracked = new WeakSet<net.Server>();
  /** Tracked servers that made HTTP/2 sessions: their connections speak `http2`. */
  readonly #http2Servers = new WeakSet<net.Server>();
  readonly #serverOf = new WeakMap<net.Socket, net.Server>();
  /** Connections that stay in this process whatever happens (migration refused or failed). */
  #kept = new WeakSet<net.Socket>();
  /** The departures that take each server's connections, asked once per server and drain (it is asked per connection). */
  readonly #departures = new Map<net.Server, Departures | undefined>();
  #draining = false;
  #migrator: Migrator | undefined;
  #onEmpty: (() => void) | undefined;
  #cancel: (() => void) | undefined;
  #upgraded: UpgradedPolicy | undefined;
  #requests = 0;
  readonly #countRequest = (): void => {
    this.#requests++;
  };

  /** Open connections across all tracked servers. */
  get size(): number {
    return this.#sockets.size;
  }

  /**
   * Requests the tracked servers received so far (HTTP/1.x 'request' events, HTTP/2 'stream'
   * events), migrated connections' included: what the upgrade report's requests per second
   * count. One increment per request, nothing more.
   */
  get requests(): number {
    return this.#requests;
  }

  /** True once {@link ConnectionTracker.drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Sets what a drain into a successor does with upgraded connections (default: they wait for the drain timeout). */
  setUpgradedPolicy(policy: UpgradedPolicy): void {
    this.#upgraded = policy;
  }

  /** Starts following `server`'s connections. Must be called before it accepts. Idempotent. */
  track(server: net.Server): void {
    if (this.#tracked.has(server)) return;
    this.#tracked.add(server);
    // Kinds that follow a server's connections from their start (h2c) begin here.
    prepareServer(server);
    server.on('connection', (socket: net.Socket) => this.add(socket, server));
    this.#servers.push(server);
    // What the upgrade report's requests per second count: one increment per request. An HTTP/2
    // server's streams are counted on 'stream' (a 'request' listener would turn on Node's
    // compatibility layer for every stream).
    if (isHttp2Server(server)) server.on('stream', this.#countRequest);
    else server.on('request', this.#countRequest);
    if (this.#legacy) {
      server.prependListener('request', (_req: unknown, res: unknown) => {
        if (this.#draining || !(res instanceof http.ServerResponse)) return;
        this.#inflight.add(res);
        res.on('close', this.#forgetResponse); // 'close' comes once per response
      });
    }
    server.on('session', (session: http2.ServerHttp2Session) => {
      this.#sessions.add(session);
      this.#sessionServer.set(session, server);
      this.#http2Servers.add(server);
      session.once('close', () => this.#sessions.delete(session));
      if (this.#draining) this.#considerSession(session);
    });
  }

  /**
   * Follows a connection that did not come through a tracked server's
   * 'connection' event (a raw connection adopted from a predecessor).
   */
  add(socket: net.Socket, server: net.Server): void {
    if (this.#sockets.has(socket)) return;
    this.#sockets.add(socket);
    this.#serverOf.set(socket, server);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      if (this.#sockets.size === 0) this.#onEmpty?.();
    });
    if (this.#draining) this.#consider(socket);
  }

  /**
   * Keeps a connection in this process for the rest of the drain (its
   * migration was refused or failed): it drains like any other.
   */
  keep(socket: net.Socket): void {
    // After a cancelled drain (rollback) a late give-back must not pin it for the next one.
    if (!this.#draining) return;
    this.#kept.add(socket);
    // An upgraded connection that came back (refused by the successor) is closed like one that never could move.
    if (this.#migrator && this.#upgraded?.close && this.#isUpgraded(socket)) closeUpgraded(socket, this.#upgraded.timeoutMs);
  }

  /**
   * A connection of a plain HTTP/1.x server that left HTTP (Node freed its
   * parser at the upgrade), or a WebSocket adopted from a predecessor. Not
   * HTTPS: a TLS server's tracked socket is the TCP one under the TLS socket
   * (which holds the parser); the `tls` kind closes those (migrate/kind-tls.ts).
   */
  #isUpgraded(socket: net.Socket): boolean {
    const server = this.#serverOf.get(socket);
    if (!(server instanceof http.Server)) return false;
    return !socket.destroyed && !hasHttpParser(socket);
  }

  /** The protocol `socket` speaks now (see {@link ConnectionProtocol}); asked at a drain's start and end only. */
  #protocolOf(socket: net.Socket): ConnectionProtocol {
    const server = this.#serverOf.get(socket);
    if (server && this.#http2Servers.has(server)) return 'http2';
    if (server instanceof http.Server) return hasHttpParser(socket) || socket.destroyed ? 'http1' : 'websocket';
    return server instanceof tls.Server ? 'tls' : 'socket';
  }

  /** Open connections by protocol. */
  #byProtocol(sockets: Iterable<net.Socket>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const socket of sockets) {
      const p = this.#protocolOf(socket);
      out[p] = (out[p] ?? 0) + 1;
    }
    return out;
  }

  /** The departures that take `socket` during this drain, unless it is kept here. */
  #leavesBy(socket: net.Socket): Departures | undefined {
    if (!this.#migrator || this.#kept.has(socket)) return undefined;
    const server = this.#serverOf.get(socket);
    return server && this.#departuresFor(server);
  }

  #departuresFor(server: net.Server): Departures | undefined {
    if (!this.#migrator) return undefined;
    if (!this.#departures.has(server)) this.#departures.set(server, this.#migrator.departuresFor(server));
    return this.#departures.get(server);
  }

  /** A session of a draining generation: migrates when it can, else GOAWAY. */
  #considerSession(session: http2.ServerHttp2Session): void {
    const server = this.#sessionServer.get(session);
    const departures = server && this.#departuresFor(server);
    if (!server || !departures?.offerSession) return goAway(session);
    const fallback = () => {
      // After a cancelled drain (rollback) the session serves on.
      if (this.#draining) goAway(session);
    };
    if (!departures.offerSession(session, server, fallback)) goAway(session);
  }

  /**
   * During a migrating drain, offers the connection of `res` again once `res`
   * is done (its socket is detached by then, hence captured now), when its
   * kind moves connections after a response. False when it drains.
   */
  #migrateAfter(res: http.ServerResponse): boolean {
    const socket = res.socket;
    if (!socket || !this.#leavesBy(socket)?.afterResponse) return false;
    res.once('finish', () => this.#next(socket) || this.#consider(socket));
    return true;
  }

  /**
   * A response under way when the drain began, or started during it: its
   * connection moves after it (see {@link ConnectionTracker.#migrateAfter}),
   * or it is the connection's last (`Connection: close`) when it has not
   * started yet; one already started finishes as it is, and the response
   * queued behind it on a pipelined connection, if any, is dealt with when it
   * comes up.
   */
  #atDrain(res: http.ServerResponse): void {
    if (this.#seen.has(res)) return;
    this.#seen.add(res);
    if (this.#migrateAfter(res)) return;
    if (!res.headersSent) res.shouldKeepAlive = false;
    else if (res.socket) {
      const socket = res.socket;
      res.once('finish', () => this.#next(socket));
    }
  }

  /**
   * After a response finished during a drain: Node has attached the next
   * response of a pipelined connection by now (its own 'finish' listener came
   * first); deals with it. False when there is none.
   */
  #next(socket: net.Socket): boolean {
    const next = pendingResponse(socket);
    if (!next || !this.#draining) return false;
    this.#atDrain(next);
    return true;
  }

  #consider(socket: net.Socket): void {
    const departures = this.#leavesBy(socket);
    // HTTP/2 connections move as sessions (#considerSession).
    if (!departures?.offer || socket.destroyed) return;
    if (!departures.offer(socket, this.#serverOf.get(socket)!)) this.#kept.add(socket);
  }

  /**
   * Drains every tracked connection as described above. Call after the
   * servers stopped accepting. Resolves when the last connection closed, or at
   * `timeoutMs` after destroying those left; with `undefined` when
   * {@link ConnectionTracker.cancelDrain} ended it first.
   */
  /**
   * Ends a drain early: connections are served normally again (keep-alive,
   * no migration) and the drain's promise resolves with `undefined`. For a
   * rollback, when the successor died while this generation drained.
   */
  cancelDrain(): void {
    if (!this.#draining) return;
    this.#draining = false;
    this.#migrator?.stop();
    this.#migrator = undefined;
    for (const server of this.#servers) server.removeListener('request', this.#onDrainRequest);
    this.#departures.clear();
    this.#kept = new WeakSet(); // a later drain may move them
    this.#cancel?.();
  }

  drain(timeoutMs: number, migrator?: Migrator): Promise<DrainReport | undefined> {
    const started = performance.now();
    const connections = this.#sockets.size;
    const atStart: Record<string, number> = {};
    this.#draining = true;
    this.#migrator = migrator;
    this.#departures.clear();
    this.#seen = new WeakSet();
    for (const server of this.#servers) {
      // An HTTP/2 server gets one only when the app listens to 'request' already: a listener turns Node's compat layer on.
      server.removeListener('request', this.#onDrainRequest);
      if (isHttp2Server(server) && server.listenerCount('request') === 0) continue;
      server.prependListener('request', this.#onDrainRequest);
      // A plain HTTP server's responses are found on its connections, in the walk below; an HTTPS
      // server's sit on the TLS sockets above the tracked ones, so they come from Node's parser list.
      if (!(server instanceof http.Server)) for (const res of pendingResponses(server) ?? []) this.#atDrain(res);
    }
    for (const res of this.#inflight) this.#atDrain(res);
    this.#inflight.clear();
    for (const session of this.#sessions) this.#considerSession(session);
    const closing = migrator && this.#upgraded?.close ? this.#upgraded : undefined;
    // One walk over every connection (this runs once per drain, so cold, ~1 µs a step with 10k
    // connections): its protocol for the report, its response under way, its offer to the kind
    // that moves it, and, migrating, the graceful close of an upgraded one no kind took.
    for (const socket of this.#sockets) {
      const protocol = this.#protocolOf(socket);
      atStart[protocol] = (atStart[protocol] ?? 0) + 1;
      // 'http1' is a connection of a plain HTTP server (see #protocolOf).
      if (protocol === 'http1') {
        const res = pendingResponse(socket);
        if (res) this.#atDrain(res);
      }
      this.#consider(socket);
      // 'websocket' is an upgraded connection of a plain HTTP server (see #isUpgraded).
      if (closing && protocol === 'websocket' && !socket.destroyed && !closing.claims(socket)) closeUpgraded(socket, closing.timeoutMs);
    }
    // Kinds look at what they were offered at once, and offer the connections they find themselves.
    migrator?.start();
    return new Promise<DrainReport | undefined>((resolve) => {
      let forced = 0;
      let forcedBy: Record<string, number> = {};
      this.#cancel = () => {
        clearTimeout(timer);
        this.#onEmpty = undefined;
        this.#cancel = undefined;
        resolve(undefined);
      };
      const finish = () => {
        clearTimeout(timer);
        this.#onEmpty = undefined;
        this.#cancel = undefined;
        const migrated = migrator?.migrated ?? 0;
        const migratedBy = migrator?.migratedByKind ?? {};
        const byProtocol: DrainByProtocol = {};
        for (const p of new Set([...Object.keys(atStart), ...Object.keys(forcedBy), ...Object.keys(migratedBy)])) {
          const m = migratedBy[p] ?? 0;
          const f = forcedBy[p] ?? 0;
          byProtocol[p] = { migrated: m, drained: Math.max(0, (atStart[p] ?? 0) - f - m), forced: f };
        }
        resolve({
          connections,
          drained: Math.max(0, connections - forced - migrated),
          forced,
          migrated,
          byProtocol,
          durationMs: performance.now() - started,
        });
      };
      const timer = setTimeout(() => {
        forced = Math.min(this.#sockets.size, connections);
        forcedBy = this.#byProtocol(this.#sockets);
        for (const session of this.#sessions) session.destroy();
        for (const socket of this.#sockets) socket.destroy();
        if (this.#sockets.size === 0) finish();
      }, timeoutMs);
      this.#onEmpty = finish;
      if (this.#sockets.size === 0) finish();
    });
  }
}

/** An HTTP/2 server (plain or TLS): Node's, which has `updateSettings`. */
function isHttp2Server(server: net.Server): boolean {
  return typeof (server as Partial<http2.Http2Server>).updateSettings === 'function';
}

/**
 * Ends an HTTP/2 session gracefully: GOAWAY with the last processed stream id,
 * in-flight streams complete, then the session closes.
 *
 * Not the two-step shutdown of RFC 9113 §6.8 (GOAWAY with 2^31-1, a round trip,
 * then the real last stream id): on Node 20 it loses streams instead of saving
 * them. nghttp2 stops accepting streams once any GOAWAY went out
 * (`session_allow_incoming_new_stream`) and silently ignores those that arrive
 * later, without RST_STREAM; and once its open streams are done it stops
 * reading (`nghttp2_session_want_read` is 0), so the PING ack was never read, the
 * final GOAWAY that would refuse those streams never went out, and they hung
 * until the drain timeout destroyed the session.
 */
function goAway(session: http2.ServerHttp2Session): void {
  if (session.closed || session.destroyed) return;
  session.close();
}
