import type http from 'node:http';
import type net from 'node:net';
import {
  acceptingServer,
  newServerWebSocket,
  onCompleteUpgrade,
  webSocketReceiver,
  webSocketSocket,
  type WsLike,
  type WssLike,
} from '../native/internals.js';
import type { Emigration } from './emigration.js';
import { resumeReading, stopReading, takeBuffered } from './socket-control.js';

export type { WsLike, WssLike } from '../native/internals.js';

/** The request a WebSocket was accepted with, as much of it as travels (URL and headers). */
export interface UpgradeRequest {
  url: string | undefined;
  headers: http.IncomingHttpHeaders;
}

/** How the WebSockets of one server migrate (see Generation#migrateWebSockets). */
export interface WebSocketMigration {
  /**
   * Names this WebSocketServer among those of the generation, so that a
   * migrated WebSocket reaches the same server in the successor (whose app
   * registers its servers under the same keys). Default: its position among
   * the servers registered for the same listener (`#0`, `#1`, … in call order).
   */
  key?: string;
  /** Predecessor: the JSON-serialisable state of a WebSocket that leaves. */
  state?: (ws: WsLike, request: UpgradeRequest | undefined) => unknown;
  /** Successor: takes over a migrated WebSocket (OPEN, same client, no handshake). */
  adopt: (ws: WsLike, state: unknown, request: UpgradeRequest | undefined) => void;
  /** @internal Which accepted WebSockets baton follows (default: all). */
  follows?: (request: http.IncomingMessage) => boolean;
}

/** What travels with a migrated WebSocket. */
export interface WebSocketTravel {
  protocol: string;
  app: unknown;
  /** The WebSocketServer's key (absent from predecessors before keys existed). */
  key?: string;
  request?: UpgradeRequest;
}

/** One registered WebSocketServer. */
export interface WebSocketRegistration {
  /** Its listener, or null: the listener the upgrade request arrived on. */
  listener: string | null;
  key: string;
  wss: WssLike;
  handlers: WebSocketMigration;
}

/** A WebSocket baton follows: its server, its HTTP server and its request. */
interface Followed {
  registration: WebSocketRegistration;
  server: net.Server | undefined;
  request: UpgradeRequest | undefined;
}

/**
 * Every WebSocketServer of a generation registered for migration, and every
 * WebSocket they accepted or adopted — whatever the server's mode (`server`,
 * `port`, `noServer` with the app calling `handleUpgrade` itself) and whether
 * it tracks its clients (`clientTracking: false` leaves `wss.clients` unset).
 *
 * It learns the WebSockets by wrapping the registered instance's
 * `completeUpgrade` (every handshake of ws 8 ends there, whichever way it was
 * started), so a server must be registered before its first client connects.
 * A WebSocket leaves the set when it closes.
 */
export class WebSocketRegistry {
  readonly #registrations: WebSocketRegistration[] = [];
  readonly #followed = new Map<WsLike, Followed>();
  readonly #bySocket = new WeakMap<net.Socket, WsLike>();
  readonly #nameOf: (server: net.Server) => string | undefined;

  /** `nameOf` gives the listener name of a server of the generation. */
  constructor(nameOf: (server: net.Server) => string | undefined) {
    this.#nameOf = nameOf;
  }

  /** Registers `wss` (idempotent for the same server and listener). */
  register(listener: string | null, wss: WssLike, handlers: WebSocketMigration): WebSocketRegistration {
    const existing = this.#registrations.find((r) => r.wss === wss && r.listener === listener);
    const key = handlers.key ?? existing?.key ?? `#${this.#registrations.filter((r) => r.listener === listener).length}`;
    const registration: WebSocketRegistration = { listener, key, wss, handlers };
    if (existing) {
      Object.assign(existing, registration);
      return existing;
    }
    this.#registrations.push(registration);
    this.#wrap(registration);
    // Clients it already has (tracked by ws) migrate too; their request is unknown.
    for (const ws of wss.clients ?? []) {
      const socket = webSocketSocket(ws);
      this.#follow(ws, registration, socket ? acceptingServer(socket) : undefined, undefined);
    }
    return registration;
  }

  /** The registration a migrated WebSocket belongs to in this generation, if any. */
  find(listener: string, key: string | undefined): WebSocketRegistration | undefined {
    if (key === undefined) return this.#registrations.find((r) => r.listener === listener);
    return (
      this.#registrations.find((r) => r.listener === listener && r.key === key) ??
      this.#registrations.find((r) => r.listener === null && r.key === key)
    );
  }

  /** True when `socket` carries a WebSocket this registry follows (it migrates, or is closed by its own policy). */
  claims(socket: net.Socket): boolean {
    const ws = this.#bySocket.get(socket);
    return ws !== undefined && this.#followed.has(ws);
  }

  /** Every followed WebSocket that is open, with its registration, its listener (if known) and its request. */
  open(): { ws: WsLike; registration: WebSocketRegistration; listener: string | undefined; request: UpgradeRequest | undefined }[] {
    const open = [];
    for (const [ws, f] of this.#followed) {
      if (ws.readyState !== OPEN) continue;
      const listener = f.registration.listener ?? (f.server ? this.#nameOf(f.server) : undefined);
      open.push({ ws, registration: f.registration, listener, request: f.request });
    }
    return open;
  }

  /** Successor: follows a WebSocket adopted from the predecessor, for the next upgrade. */
  adopted(ws: WsLike, registration: WebSocketRegistration, server: net.Server, request: UpgradeRequest | undefined): void {
    this.#follow(ws, registration, server, request);
  }

  #wrap(registration: WebSocketRegistration): void {
    const wss = registration.wss;
    onCompleteUpgrade(wss, (ws, req) => {
      const r = this.#registrations.find((x) => x.wss === wss) ?? registration;
      if (r.handlers.follows && !r.handlers.follows(req)) return;
      this.#follow(ws, r, req.socket ? acceptingServer(req.socket) : undefined, { url: req.url, headers: req.headers });
    });
  }

  #follow(ws: WsLike, registration: WebSocketRegistration, server: net.Server | undefined, request: UpgradeRequest | undefined): void {
    if (this.#followed.has(ws)) return;
    this.#followed.set(ws, { registration, server, request });
    const socket = webSocketSocket(ws);
    if (socket) this.#bySocket.set(socket, ws);
    ws.on('close', () => this.#followed.delete(ws));
  }
}

const OPEN = 1;

/**
 * Moves a WebSocket at a frame boundary: reading stops, and when ws's receiver
 * holds no half-parsed frame and no fragmented message, and everything sent
 * has flushed, the connection leaves with the receiver's unparsed bytes
 * (fewer than a frame header) as its head. Otherwise reading resumes for one
 * more chunk and the check repeats, until `timeoutMs`.
 *
 * A WebSocket that cannot move — permessage-deflate negotiated (its
 * compression context cannot leave the process), or no boundary in time — is
 * closed with 1012 (Service Restart) so the client reconnects to the successor.
 * Its entry carries kind `kind`.
 */
export function offerWebSocket(
  kind: string,
  ws: WsLike,
  emigration: Emigration,
  listener: string,
  registration: WebSocketRegistration,
  request: UpgradeRequest | undefined,
  timeoutMs: number,
  keep: (socket: net.Socket) => void,
): void {
  const socket = webSocketSocket(ws);
  if (!socket || ws.readyState !== OPEN) return;
  const receiver = webSocketReceiver(ws);
  if (receiver === 'deflate' || receiver === 'unknown') {
    keep(socket);
    closeWebSocket(ws, timeoutMs);
    return;
  }
  const deadline = performance.now() + timeoutMs;
  const attempt = (): void => {
    if (socket.destroyed || ws.readyState !== OPEN) return;
    stopReading(socket);
    const r = webSocketReceiver(ws);
    const boundary = typeof r === 'object' && r.atBoundary ? r : undefined;
    if (!boundary || socket.writableLength > 0) {
      if (performance.now() > deadline) {
        resumeReading(socket);
        keep(socket);
        closeWebSocket(ws, timeoutMs);
        return;
      }
      // Let one more chunk in (or the pending write flush), then look again.
      resumeReading(socket);
      const again = () => {
        socket.off('data', again);
        socket.off('drain', again);
        setImmediate(attempt);
      };
      socket.on('data', again);
      if (socket.writableLength > 0) socket.on('drain', again);
      return;
    }
    const unparsed = boundary.unparsed;
    // Unparsed bytes: the receiver's, then any the socket buffered while ws had it paused.
    const pending = takeBuffered(socket);
    const head = unparsed.length > 0 || pending ? Buffer.concat([...unparsed, ...(pending ? [pending] : [])]) : undefined;
    let app: unknown;
    try {
      app = registration.handlers.state?.(ws, request);
    } catch {
      app = undefined;
    }
    const travel: WebSocketTravel = { protocol: ws.protocol ?? '', app, key: registration.key, request };
    // Coming back, the bytes taken from the socket go back in front (ws's receiver kept its own).
    const restore = () => {
      if (pending) socket.unshift(pending);
    };
    if (!emigration.offer(socket, listener, kind, { head, state: travel, restore })) {
      restore();
      resumeReading(socket);
      keep(socket);
      closeWebSocket(ws, timeoutMs);
    }
  };
  attempt();
}

/**
 * Closes a WebSocket that cannot migrate, so that nothing its client sent is
 * half-handled: reading stops; once the app's answers to the messages it had
 * already received have gone out (nothing left to write for two event-loop
 * turns in a row, or `timeoutMs`), the close frame 1012 (Service Restart)
 * follows them, and reading resumes only to complete the closing handshake —
 * messages that arrive after the close frame are not given to the app (it
 * could not answer them anyway). So every message is either answered here or
 * never seen here: a client that sends again what was not answered (socket.io
 * with its `retries` option) sends it to the successor, exactly once.
 */
export function closeWebSocket(ws: WsLike, timeoutMs: number): void {
  const socket = webSocketSocket(ws);
  if (!socket || ws.readyState !== OPEN) return;
  stopReading(socket);
  const deadline = performance.now() + timeoutMs;
  let written = -1;
  let quiet = 0;
  const check = () => {
    if (socket.destroyed || ws.readyState !== OPEN) return;
    const flushed = socket.writableLength === 0 && !ws.bufferedAmount;
    quiet = flushed && socket.bytesWritten === written ? quiet + 1 : 0;
    written = socket.bytesWritten;
    if (quiet < 2 && performance.now() < deadline) {
      setImmediate(check);
      return;
    }
    const emit = ws.emit;
    ws.emit = function (this: WsLike, event: string | symbol, ...args: unknown[]): boolean {
      return event === 'message' ? false : emit.call(this, event, ...args);
    };
    ws.close(1012, 'Service Restart');
    resumeReading(socket);
  };
  setImmediate(check);
}

/**
 * Successor side: builds a server-side WebSocket of the app's `ws` on the
 * migrated socket, as WebSocketServer does after a handshake, and hands it to
 * the app. `head` goes back in front of the stream.
 */
export function adoptWebSocket(
  wss: WssLike,
  socket: net.Socket,
  head: Buffer,
  travel: WebSocketTravel,
  handlers: WebSocketMigration,
): WsLike {
  const ws = newServerWebSocket(wss, socket, head, travel?.protocol ?? '');
  if (wss.clients) {
    const clients = wss.clients;
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
  }
  handlers.adopt(ws, travel?.app, travel?.request);
  return ws;
}
