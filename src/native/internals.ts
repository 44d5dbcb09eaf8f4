/**
 * Every access baton makes to private internals of Node and of the app's
 * `ws`: nothing else in src/ reads an underscore field, a private symbol or
 * an undocumented method. Each accessor returns `undefined` (or false) when
 * the internal is not there, so a Node or ws release that changed one makes
 * baton fall back to draining, never crash.
 *
 * {@link probeNodeInternals} looks at Node's at start-up, and
 * {@link probeWebSocketServer} at a ws server when it is registered; each
 * missing internal is reported as a {@link MissingInternal} naming what
 * degrades, which the generation emits as a `'warning'`
 * (`ERR_BATON_INTERNAL_MISSING`) and shows in `baton status`.
 *
 * Internals used (Node 20–24, ws 8):
 * - a connected socket's libuv stream `_handle`: `fd`, `readStop()`,
 *   `readStart()`, `reading`, `writeQueueSize` — every migration freezes a
 *   connection with them (probed);
 * - a listening server's `_handle.fd` — the handover sends it (used where a
 *   listener is handed over; a server without one is bound afresh);
 * - a `dgram.Socket`'s state (the private symbol `state symbol`): its UDP
 *   handle's `fd`, `recvStop()` and `recvStart()`, and the `receiving` flag —
 *   a datagram listener is handed over with them and a predecessor stops
 *   reading at its successor's ready (used where a datagram listener is set
 *   up: without them `listenDatagram` throws ERR_BATON_INTERNAL_MISSING), and
 *   a socket's `type` field (`udp4`/`udp6`, checked against the listener's),
 *   and its `connectState` (an inherited connected socket is marked connected);
 * - an `http.Server`'s list of HTTP/1.1 connections (the private symbol
 *   `http.server.connections`, behind `closeIdleConnections()`) — HTTP/1.1
 *   request boundaries (probed);
 * - an HTTP connection's `parser` (freed at an `Upgrade`) and `_httpMessage`
 *   (the response under way), and the `server` an accepted socket came
 *   through;
 * - an HTTP/2 session's private `state` (its map of open streams), counted
 *   when a session migrates (without it baton counts streams itself);
 * - ws: a socket's WebSocket (ws's `websocket` symbol), a WebSocket's
 *   `_socket`, `_receiver` (parser state `_state`, `_fragmented`,
 *   `_bufferedBytes`, `_buffers`), `_extensions` and `_protocol`,
 *   `setSocket()`, the server-side constructor call `new WebSocket(null,
 *   undefined, options)`, and WebSocketServer's `completeUpgrade()` (probed at
 *   registration: the server's).
 */
import type dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { BatonError } from '../core/errors.js';
import { loadBinding } from './binding.js';
import { closeQuietly } from './socket-info.js';

/** An internal that is not there, and what baton does without it. */
export interface MissingInternal {
  /** Stable name of the internal, e.g. `http.server.connections`. */
  internal: string;
  /** What degrades, in a sentence, e.g. "HTTP/1.1 connections drain instead of migrating". */
  degrades: string;
}

/* ------------------------------------------------------------------ Node: handles */

/** The libuv stream handle of a connected socket, as far as baton uses it. */
interface StreamHandle {
  fd?: number;
  readStop?: () => number;
  readStart?: () => number;
  reading?: boolean;
  writeQueueSize?: number;
}

function handleOf(x: net.Socket | net.Server): StreamHandle | undefined {
  return (x as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;
}

/** The fd of a connected socket or a listening server (on Node's `_handle`); undefined without one. */
export function handleFd(x: net.Socket | net.Server): number | undefined {
  const fd = handleOf(x)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Stops libuv reading from `socket` (`socket.pause()` alone does not). False when it has no handle to stop. */
export function handleReadStop(socket: net.Socket): boolean {
  const handle = handleOf(socket);
  if (typeof handle?.readStop !== 'function') return false;
  handle.readStop();
  handle.reading = false;
  return true;
}

/** Undoes {@link handleReadStop}. */
export function handleReadStart(socket: net.Socket): void {
  const handle = handleOf(socket);
  if (typeof handle?.readStart !== 'function' || socket.destroyed) return;
  handle.reading = true;
  handle.readStart();
}

/**
 * Runs `read` with Node's `reading` flag of the handle set, so that a
 * `socket.read()` inside does not restart libuv reading (it does when it sees
 * the flag false); the flag is put back after.
 */
export function withReadingFlag<T>(socket: net.Socket, read: () => T): T {
  const handle = handleOf(socket);
  const was = handle?.reading;
  if (handle) handle.reading = true;
  try {
    return read();
  } finally {
    if (handle) handle.reading = was;
  }
}

/** Bytes libuv still has to write on `socket` (0 without a handle). */
export function handleWriteQueue(socket: net.Socket): number {
  return handleOf(socket)?.writeQueueSize ?? 0;
}

/* ------------------------------------------------------------------ Node: dgram */

/** Node's state of a `dgram.Socket`, as far as baton uses it. */
interface DatagramState {
  handle?: { fd?: number; recvStop?: () => number; recvStart?: () => number } | null;
  receiving?: boolean;
  connectState?: number;
}

/** Node's `CONNECT_STATE_DISCONNECTED` and `CONNECT_STATE_CONNECTED` (lib/dgram.js). */
const DGRAM_DISCONNECTED = 0;
const DGRAM_CONNECTED = 2;

function datagramState(socket: dgram.Socket): DatagramState | undefined {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const state = sym ? (socket as unknown as Record<symbol, unknown>)[sym] : undefined;
  return state && typeof state === 'object' ? (state as DatagramState) : undefined;
}

/** The type a `dgram.Socket` was created with (Node's undocumented `type` field); undefined when not there. */
export function datagramType(socket: dgram.Socket): string | undefined {
  const type = (socket as unknown as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

/**
 * Tells Node that `socket`, just bound to an inherited fd, is connected: libuv
 * sees it (uv_udp_open checks getpeername, and a connect() of it then fails
 * with EISCONN) but Node's state does not, so `send()` without an address and
 * `remoteAddress()` would refuse. False when Node's state is not as expected
 * (not disconnected, or no such field).
 */
export function datagramMarkConnected(socket: dgram.Socket): boolean {
  const state = datagramState(socket);
  if (state?.connectState !== DGRAM_DISCONNECTED) return false;
  state.connectState = DGRAM_CONNECTED;
  return true;
}

/** True when `socket` exposes what {@link datagramFd} and {@link datagramReceiving} need. */
export function hasDatagramInternals(socket: dgram.Socket): boolean {
  const handle = datagramState(socket)?.handle;
  return typeof handle?.recvStop === 'function' && typeof handle.recvStart === 'function' && 'fd' in handle;
}

/** The fd of a bound `dgram.Socket` (on its UDP handle); undefined when unbound or closed. */
export function datagramFd(socket: dgram.Socket): number | undefined {
  const fd = datagramState(socket)?.handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Starts (`on`) or stops libuv reading from a bound `dgram.Socket`, keeping
 * Node's `receiving` flag true to what the handle does (its close() stops
 * receiving only when the flag says so). Stopped, datagrams wait in the
 * kernel's receive queue for whoever reads the socket next. Sending is not
 * affected. False when the socket has no handle (closed) or the internals are
 * missing.
 */
export function datagramReceiving(socket: dgram.Socket, on: boolean): boolean {
  const state = datagramState(socket);
  const handle = state?.handle;
  if (!state || typeof handle?.recvStop !== 'function' || typeof handle.recvStart !== 'function') return false;
  if (on) handle.recvStart();
  else handle.recvStop();
  state.receiving = on;
  return true;
}

/* ------------------------------------------------------------------ Node: HTTP */

type Parser = { socket?: net.Socket };
/** Node's list of the parsers of an http.Server's connections. */
type Http1ConnectionsList = { idle(): Parser[]; active?(): Parser[]; all?(): Parser[] };

/** Node's list of the HTTP/1.1 connections of `server` (set once it listens); undefined when not there. */
export function http1ConnectionsList(server: net.Server): Http1ConnectionsList | undefined {
  const sym = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections');
  const list = sym ? (server as unknown as Record<symbol, unknown>)[sym] : undefined;
  return list && typeof (list as Http1ConnectionsList).idle === 'function' ? (list as Http1ConnectionsList) : undefined;
}

/**
 * The responses under way on `server`'s HTTP/1.x connections, read from Node's
 * own state — the parser list behind `closeIdleConnections()` and each
 * connection's `_httpMessage` — so nothing has to be recorded per request.
 * A TLS connection's parser sits on its TLS socket, whose response this
 * finds too. Responses queued behind another one on a pipelined connection
 * are not attached yet and not listed (the one ahead of them is). Undefined
 * when the list is not there (another Node release).
 */
export function pendingResponses(server: net.Server): http.ServerResponse[] | undefined {
  const list = http1ConnectionsList(server);
  if (!list) return undefined;
  const parsers = list.all?.() ?? [...list.idle(), ...(list.active?.() ?? [])];
  const out: http.ServerResponse[] = [];
  for (const parser of parsers) {
    const res = parser.socket && pendingResponse(parser.socket);
    if (res) out.push(res);
  }
  return out;
}

/** The response under way on an HTTP connection (Node's `_httpMessage`), if any. */
export function pendingResponse(socket: net.Socket): http.ServerResponse | undefined {
  return (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage ?? undefined;
}

/** True while an HTTP connection has a response under way. */
export function hasPendingResponse(socket: net.Socket): boolean {
  return pendingResponse(socket) !== undefined;
}

/** True while a connection of an HTTP/1.x server still has its HTTP parser: Node frees it at an `Upgrade`. */
export function hasHttpParser(socket: net.Socket): boolean {
  return Boolean((socket as { parser?: unknown }).parser);
}

/** The server that accepted `socket` (Node sets it on every accepted connection). */
export function acceptingServer(socket: net.Socket): net.Server | undefined {
  return (socket as { server?: net.Server }).server ?? undefined;
}

/* ------------------------------------------------------------------ Node: HTTP/2 */

/** Node's private per-session state symbol, found on the first session looked at. */
let sessionStateKey: symbol | undefined;

/**
 * Streams open on an HTTP/2 session, from Node's own stream map (the `streams`
 * Map and `pendingStreams` Set of the session's private `state`), so nobody has
 * to count them per stream. A stream leaves the map when it is destroyed,
 * just before its 'close'. Undefined when the map is not there.
 */
export function http2OpenStreams(session: object): number | undefined {
  sessionStateKey ??= Object.getOwnPropertySymbols(session).find((k) => k.description === 'state');
  const state =
    sessionStateKey &&
    (session as Record<symbol, { streams?: { size?: unknown }; pendingStreams?: { size?: unknown } } | undefined>)[sessionStateKey];
  // Node's own SafeMap and SafeSet (its primordials): not `instanceof` this realm's Map and Set.
  const streams = state?.streams?.size;
  if (typeof streams !== 'number') return undefined;
  const pending = state?.pendingStreams?.size;
  return streams + (typeof pending === 'number' ? pending : 0);
}

/* ------------------------------------------------------------------ ws */

/**
 * The parts of a `ws` WebSocket baton relies on, typed structurally so baton
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
  bufferedAmount?: number;
  setSocket(socket: net.Socket, head: Buffer, options: Record<string, unknown>): void;
  on(event: 'close', listener: () => void): unknown;
  emit(event: string | symbol, ...args: unknown[]): boolean;
  close(code?: number, reason?: string): void;
}

/** The parts of ws's WebSocketServer used to adopt a migrated connection and to learn its WebSockets. */
export interface WssLike {
  clients?: Set<WsLike>;
  options: { WebSocket: new (address: null, protocols: undefined, options: Record<string, unknown>) => WsLike } & Record<string, unknown>;
  completeUpgrade?: (...args: unknown[]) => unknown;
}

/** The WebSocket of ws on `socket` (ws 8 keeps it under its private `websocket` symbol), if any. */
export function webSocketOn(socket: net.Socket): WsLike | undefined {
  const key = Object.getOwnPropertySymbols(socket).find((k) => k.description === 'websocket');
  const ws = key ? (socket as unknown as Record<symbol, unknown>)[key] : undefined;
  if (typeof ws !== 'object' || ws === null || typeof (ws as { close?: unknown }).close !== 'function') return undefined;
  if ((ws as WsLike)._socket !== socket) return undefined;
  return ws as WsLike;
}

/** The socket under a ws WebSocket (its `_socket`), if it still has one. */
export function webSocketSocket(ws: WsLike): net.Socket | undefined {
  return ws._socket ?? undefined;
}

const GET_INFO = 0; // ws Receiver: waiting for the first bytes of a frame

/** What degrades when a ws WebSocket's parser state is not the one baton knows ({@link webSocketReceiver} says `'unknown'`). */
export const WEBSOCKET_RECEIVER_MISSING: MissingInternal = {
  internal: 'ws WebSocket#_receiver',
  degrades: 'WebSockets are closed with 1012 instead of migrating',
};

/**
 * Where ws's receiver of `ws` stands: `'deflate'` when permessage-deflate was
 * negotiated (its compression context cannot leave the process),
 * `'unknown'` when the receiver is not the one baton knows, else whether it
 * sits between two frames of no fragmented message with every byte handed to
 * it parsed, and the bytes it holds unparsed (fewer than a frame header).
 */
export function webSocketReceiver(ws: WsLike): 'deflate' | 'unknown' | { atBoundary: boolean; unparsed: Buffer[] } {
  if (ws._extensions?.['permessage-deflate']) return 'deflate';
  const r = ws._receiver;
  if (!r || typeof r._state !== 'number' || typeof r._fragmented !== 'number' || !Array.isArray(r._buffers)) return 'unknown';
  return {
    atBoundary: r._state === GET_INFO && r._fragmented === 0 && r.writableLength === 0,
    unparsed: r._bufferedBytes > 0 ? r._buffers : [],
  };
}

/**
 * Builds a server-side WebSocket of `wss`'s ws on a migrated socket, as
 * WebSocketServer does after a handshake; `head` goes back in front of the
 * stream.
 */
export function newServerWebSocket(wss: WssLike, socket: net.Socket, head: Buffer, protocol: string): WsLike {
  const o = wss.options;
  const ws = new o.WebSocket(null, undefined, o);
  ws._protocol = protocol;
  ws.setSocket(socket, head, {
    allowSynchronousEvents: o.allowSynchronousEvents,
    maxBufferedChunks: o.maxBufferedChunks,
    maxFragments: o.maxFragments,
    maxPayload: o.maxPayload,
    skipUTF8Validation: o.skipUTF8Validation,
  });
  return ws;
}

/**
 * Calls `follow(ws, req)` for every WebSocket `wss` accepts, by wrapping that
 * instance's `completeUpgrade` (where every handshake of ws 8 ends, whichever
 * way it was started). False when the server has none.
 */
export function onCompleteUpgrade(wss: WssLike, follow: (ws: WsLike, req: http.IncomingMessage) => void): boolean {
  const complete = wss.completeUpgrade;
  if (typeof complete !== 'function') return false;
  // ws calls it as this.completeUpgrade(extensions, key, protocols, req, socket, head, cb): the
  // callback receives (ws, req) once the handshake is written and the WebSocket set up.
  wss.completeUpgrade = function completeUpgrade(this: WssLike, ...args: unknown[]) {
    const cb = args[args.length - 1];
    if (typeof cb === 'function') {
      args[args.length - 1] = (ws: WsLike, req: http.IncomingMessage) => {
        try {
          follow(ws, req);
        } finally {
          (cb as (ws: WsLike, req: http.IncomingMessage) => void)(ws, req);
        }
      };
    }
    return complete.apply(this, args);
  };
  return true;
}

/* ------------------------------------------------------------------ probes */

/** What degrades without a socket's stream handle. */
const NO_HANDLE = 'no connection migrates (every kind freezes its connections through it): connections drain';
/** What degrades without Node's HTTP connection list. */
const NO_HTTP1_LIST =
  'HTTP/1.1 connections drain (Connection: close, keep-alive timeout) instead of migrating, and data consistency mode cannot tell when requests are in flight';

let probed: readonly MissingInternal[] | undefined;

/**
 * Looks at Node's internals baton needs, on objects of its own: a socket on
 * one end of a socketpair (both fds closed here) and an `http.Server` that
 * never listens. Returns those missing; empty on the Node versions baton
 * supports. Synchronous, for start-up; looks once per process.
 */
export function probeNodeInternals(): readonly MissingInternal[] {
  probed ??= probe();
  return probed;
}

/** Names a missing internal in a warning (`ERR_BATON_INTERNAL_MISSING`). */
export function missingInternalWarning(m: MissingInternal, owner = `Node ${process.version}`): BatonError {
  return new BatonError('ERR_BATON_INTERNAL_MISSING', `${owner} lacks the internal '${m.internal}' baton relies on: ${m.degrades}`);
}

/** A socketpair for the handle probe; none without the addon (start-up reports that itself). */
function socketpairOrNone(): [number, number] | undefined {
  try {
    const fds = loadBinding().socketpair();
    return typeof fds === 'number' ? undefined : fds;
  } catch {
    return undefined;
  }
}

function probe(): MissingInternal[] {
  const missing: MissingInternal[] = [];
  const fds = socketpairOrNone();
  if (fds) {
    let socket: net.Socket | undefined;
    try {
      socket = new net.Socket({ fd: fds[0], readable: true, writable: true });
      const h = handleOf(socket);
      const ok =
        handleFd(socket) === fds[0] &&
        typeof h?.readStop === 'function' &&
        typeof h.readStart === 'function' &&
        typeof h.writeQueueSize === 'number' &&
        'reading' in h;
      if (!ok) missing.push({ internal: 'net.Socket._handle', degrades: NO_HANDLE });
    } finally {
      // The socket owns fds[0] from its construction on; without one it is still ours.
      if (socket) socket.destroy();
      else closeQuietly(fds[0]);
      closeQuietly(fds[1]);
    }
  }
  // Node sets the list up when a server starts listening ('listening'); this one never listens.
  const server = new http.Server();
  server.emit('listening');
  if (!http1ConnectionsList(server)) missing.push({ internal: 'http.server.connections', degrades: NO_HTTP1_LIST });
  server.close();
  return missing;
}

/**
 * Looks at a `ws` WebSocketServer being registered for migration: without
 * `completeUpgrade` baton cannot learn its WebSockets, without the
 * server-side constructor's `setSocket` it cannot adopt one.
 */
export function probeWebSocketServer(wss: WssLike): MissingInternal[] {
  const missing: MissingInternal[] = [];
  if (typeof wss.completeUpgrade !== 'function')
    missing.push({
      internal: 'ws WebSocketServer#completeUpgrade',
      degrades: 'WebSockets this server accepts from now on are not followed: they are closed with 1012 at a drain instead of migrating',
    });
  const proto = (wss.options?.WebSocket as { prototype?: { setSocket?: unknown } } | undefined)?.prototype;
  if (typeof proto?.setSocket !== 'function')
    missing.push({
      internal: 'ws WebSocket#setSocket',
      degrades: 'WebSockets migrated to this server are refused: they stay with the predecessor and are closed with 1012',
    });
  return missing;
}
