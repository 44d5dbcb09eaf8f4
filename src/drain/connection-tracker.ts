import http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';

/** What a drain did, for reports and the Done frame. */
export interface DrainReport {
  /** Connections open when the drain began. */
  connections: number;
  /** Connections that ended by themselves (after `Connection: close`, GOAWAY or idle timeout). */
  drained: number;
  /** Connections destroyed at the drain timeout (long-lived ones, stuck requests). */
  forced: number;
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
 */
export class ConnectionTracker {
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #inflight = new Set<http.ServerResponse>();
  /**
   * Forgets a finished response. One function shared by every response (`this` is the
   * response): a closure plus a once() wrapper per request cost about 5 % of a hello
   * server's throughput (bench/handover.ts, part 4).
   */
  readonly #forgetResponse = ((inflight) =>
    function (this: http.ServerResponse) {
      inflight.delete(this);
    })(this.#inflight);
  readonly #tracked = new WeakSet<net.Server>();
  #draining = false;
  #onEmpty: (() => void) | undefined;

  /** Open connections across all tracked servers. */
  get size(): number {
    return this.#sockets.size;
  }

  /** True once {@link ConnectionTracker.drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Starts following `server`'s connections. Must be called before it accepts. Idempotent. */
  track(server: net.Server): void {
    if (this.#tracked.has(server)) return;
    this.#tracked.add(server);
    server.on('connection', (socket: net.Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => {
        this.#sockets.delete(socket);
        if (this.#sockets.size === 0) this.#onEmpty?.();
      });
    });
    // prependListener: decide keep-alive before the app's handler writes headers.
    server.prependListener('request', (_req: unknown, res: unknown) => {
      if (!(res instanceof http.ServerResponse)) return; // HTTP/2 compat API: GOAWAY handles it
      if (this.#draining) {
        res.shouldKeepAlive = false;
        return;
      }
      this.#inflight.add(res);
      res.on('close', this.#forgetResponse); // 'close' comes once per response
    });
    server.on('session', (session: http2.ServerHttp2Session) => {
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
      if (this.#draining) goAway(session);
    });
  }

  /**
   * Drains every tracked connection as described above. Call after the
   * servers stopped accepting. Resolves when the last connection closed, or at
   * `timeoutMs` after destroying those left. Call once.
   */
  drain(timeoutMs: number): Promise<DrainReport> {
    const started = performance.now();
    const connections = this.#sockets.size;
    this.#draining = true;
    for (const res of this.#inflight) if (!res.headersSent) res.shouldKeepAlive = false;
    this.#inflight.clear();
    for (const session of this.#sessions) goAway(session);
    return new Promise<DrainReport>((resolve) => {
      let forced = 0;
      const finish = () => {
        clearTimeout(timer);
        this.#onEmpty = undefined;
        resolve({ connections, drained: connections - forced, forced, durationMs: performance.now() - started });
      };
      const timer = setTimeout(() => {
        forced = Math.min(this.#sockets.size, connections);
        for (const session of this.#sessions) session.destroy();
        for (const socket of this.#sockets) socket.destroy();
        if (this.#sockets.size === 0) finish();
      }, timeoutMs);
      this.#onEmpty = finish;
      if (this.#sockets.size === 0) finish();
    });
  }
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
