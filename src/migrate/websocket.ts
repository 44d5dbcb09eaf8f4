import type net from 'node:net';
import type { Emigration } from './emigration.js';
import { resumeReading, stopReading, takeBuffered } from './socket-control.js';

/**
 * The parts of the `ws` package baton relies on, typed structurally so baton
 * does not load `ws` itself: the app's own copy is used. Checked against ws 8.
 */
export interface WsLike {
  readyState: number;
  protocol: string;
  _socket: net.Socket | null;
  _extensions: Record<string, unknown>;
  _protocol: string;
  _receiver: {
    _state: number;
    _fragmented: number;
    _bufferedBytes: number;
    _buffers: Buffer[];
    writableLength: number;
  } | null;
  setSocket(socket: net.Socket, head: Buffer, options: Record<string, unknown>): void;
  on(event: 'close', listener: () => void): unknown;
  close(code?: number, reason?: string): void;
}

/** The parts of ws's WebSocketServer used to adopt a migrated connection. */
export interface WssLike {
  clients?: Set<WsLike>;
  options: { WebSocket: new (address: null, protocols: undefined, options: Record<string, unknown>) => WsLike } & Record<string, unknown>;
}

/** How the WebSockets of one server migrate (see Generation#migrateWebSockets). */
export interface WebSocketMigration {
  /** Predecessor: the JSON-serialisable state of a WebSocket that leaves. */
  state?: (ws: WsLike) => unknown;
  /** Successor: takes over a migrated WebSocket (OPEN, same client, no handshake). */
  adopt: (ws: WsLike, state: unknown) => void;
}

/** What travels with a migrated WebSocket. */
export interface WebSocketTravel {
  protocol: string;
  app: unknown;
}

const OPEN = 1;
const GET_INFO = 0; // ws Receiver: waiting for the first bytes of a frame

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
 */
export function offerWebSocket(
  ws: WsLike,
  emigration: Emigration,
  listener: string,
  handlers: WebSocketMigration,
  timeoutMs: number,
  keep: (socket: net.Socket) => void,
): void {
  const socket = ws._socket;
  if (!socket || ws.readyState !== OPEN) return;
  if (ws._extensions['permessage-deflate'] || !ws._receiver) {
    keep(socket);
    ws.close(1012, 'Service Restart');
    return;
  }
  const deadline = performance.now() + timeoutMs;
  const attempt = (): void => {
    if (socket.destroyed || ws.readyState !== OPEN) return;
    stopReading(socket);
    const r = ws._receiver!;
    const atBoundary = r._state === GET_INFO && r._fragmented === 0 && r.writableLength === 0;
    if (!atBoundary || socket.writableLength > 0) {
      if (performance.now() > deadline) {
        resumeReading(socket);
        keep(socket);
        ws.close(1012, 'Service Restart');
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
    // Unparsed bytes: the receiver's, then any the socket buffered while ws had it paused.
    const pending = takeBuffered(socket);
    const head = r._bufferedBytes > 0 || pending ? Buffer.concat([...r._buffers, ...(pending ? [pending] : [])]) : undefined;
    let app: unknown;
    try {
      app = handlers.state?.(ws);
    } catch {
      app = undefined;
    }
    const travel: WebSocketTravel = { protocol: ws.protocol ?? '', app };
    // Coming back, the bytes taken from the socket go back in front (ws's receiver kept its own).
    const restore = () => {
      if (pending) socket.unshift(pending);
    };
    if (!emigration.offer(socket, listener, 'websocket', { head, state: travel, restore })) {
      restore();
      resumeReading(socket);
      keep(socket);
      ws.close(1012, 'Service Restart');
    }
  };
  attempt();
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
  const o = wss.options;
  const ws = new o.WebSocket(null, undefined, o);
  ws._protocol = travel?.protocol ?? '';
  ws.setSocket(socket, head, {
    allowSynchronousEvents: o.allowSynchronousEvents,
    maxBufferedChunks: o.maxBufferedChunks,
    maxFragments: o.maxFragments,
    maxPayload: o.maxPayload,
    skipUTF8Validation: o.skipUTF8Validation,
  });
  if (wss.clients) {
    const clients = wss.clients;
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
  }
  handlers.adopt(ws, travel?.app);
  return ws;
}
