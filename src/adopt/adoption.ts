/**
 * Zero-code adoption: an unmodified app's servers get their listeners through
 * baton. `net.Server.prototype.listen` (which http, https, http2, Express,
 * Fastify, Koa and ws all end up in) is wrapped: each call becomes a named
 * listener of this process's generation — inherited from a predecessor or the
 * service manager, or bound — and the server is tracked for drain and
 * migration. `dgram.Socket.prototype.bind` is wrapped the same way: each
 * explicit bind() becomes a datagram listener (Generation#listenDatagram).
 * Once the app's listeners are up (no new listen() or bind() for `quietMs`),
 * the generation is declared ready; or the app calls `adoptedReady()` (host.ts).
 *
 * Installed by `node --import baton/register` (`baton run`, and `baton start`'s
 * workers). It stays out
 * of the way of an app that uses baton's library itself (start() called first).
 */
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import { BatonError, asError } from '../core/errors.js';
import { Defaults } from '../core/options.js';
import type { Generation } from '../generation.js';
import { librarySessionStarted, start } from '../start.js';
import { listenerName, parseListenArgs } from './listen-args.js';
import { currentHost, registerAdoptedReady, type Host } from '../host.js';
import { datagramListenerName, parseBindArgs } from './bind-args.js';
import type { DatagramAddress, DatagramType } from '../listeners/datagram-listeners.js';
import { hookSocketIo, type SocketIoHooks } from './socketio.js';
import { datagramType, webSocketSocket, type WsLike } from '../native/internals.js';

/** Settings of an adoption (from `baton run`'s options or the environment). */
export interface AdoptionOptions {
  /** The generation's name (its upgrade socket). */
  name: string;
  socketDir?: string;
  /** `auto`: ready once no listen() came for `quietMs`; `explicit`: the app calls `adoptedReady()` (host.ts). */
  ready: 'auto' | 'explicit';
  quietMs: number;
  /**
   * An app that never listens within this many ms is reported and the process exits with code 1; as a
   * predecessor, the generation aborts a successor not ready within it (StartOptions.readyTimeoutMs).
   */
  readyTimeoutMs: number;
  /** The app's entry module: `ws` is looked up from there; it is also the app's identity in the handover (StartOptions.app). */
  appEntry: string;
  /** The name was given by the user (`--name`, BATON_NAME), not derived from the entry. */
  namedOnPurpose?: boolean;
  /** Data consistency mode (StartOptions.consistency): see {@link startBeforeApp}. */
  consistency?: boolean;
  /** StartOptions.livenessTimeoutMs (`baton run --liveness-ms`); absent: the library's default. */
  livenessMs?: number;
  /** StartOptions.maxGenerations (`baton run --max-generations`); absent: the library's default. */
  maxGenerations?: number;
  /** Where baton's own lines go. */
  report: (event: string, data: Record<string, unknown>, text: string) => void;
}

type Listen = (this: net.Server, ...args: unknown[]) => net.Server;
type Bind = (this: dgram.Socket, ...args: unknown[]) => dgram.Socket;

interface State {
  options: AdoptionOptions;
  generation: Promise<Generation> | undefined;
  /** Servers whose listen() calls come from baton itself (adopting an fd, binding). */
  internal: WeakSet<net.Server>;
  names: Map<net.Server, string>;
  portZeroCalls: number;
  /** Sockets whose bind() calls come from baton itself (adopting an fd, binding). */
  internalDatagrams: WeakSet<dgram.Socket>;
  /** Port-0 bind() calls so far, per socket type (their order names them). */
  portZeroBinds: Record<DatagramType, number>;
  pending: number;
  quietTimer: NodeJS.Timeout | undefined;
  readyCalled: boolean;
  /** WebSocketServers created before the generation existed, in creation order, with their key. */
  websockets: { wss: object; key: string }[];
  /** WebSocketServers created so far in this process (their keys are `ws#<n>`, in creation order). */
  websocketCount: number;
  /** The process's host (host.ts; a `baton start` worker's master), if any: a listener the app binds itself is handed to it. */
  host: Host | undefined;
  /** The app's socket.io, hooked (adopt/socketio.ts), if it uses it. */
  socketIo: SocketIoHooks | undefined;
}

let state: State | undefined;

/**
 * Wraps `net.Server.prototype.listen` for this process. Call once, before the
 * app's code runs. The process is the host: when the generation has drained
 * after an upgrade (or stopped), the app's own SIGTERM handlers run, then the
 * process exits.
 */
export function installAdoption(options: AdoptionOptions): void {
  if (state) throw new BatonError('ERR_BATON_INVALID_PHASE', 'zero-code adoption is already installed in this process');
  const originalListen = net.Server.prototype.listen as unknown as Listen;
  const s: State = {
    options,
    generation: undefined,
    internal: new WeakSet(),
    names: new Map(),
    portZeroCalls: 0,
    internalDatagrams: new WeakSet(),
    portZeroBinds: { udp4: 0, udp6: 0 },
    pending: 0,
    quietTimer: undefined,
    readyCalled: false,
    websockets: [],
    websocketCount: 0,
    host: currentHost(),
    socketIo: undefined,
  };
  state = s;
  net.Server.prototype.listen = function listen(this: net.Server, ...args: unknown[]): net.Server {
    // The app drives baton's library itself, or baton is listening on its own behalf.
    if (s.internal.has(this) || (librarySessionStarted() && !s.generation)) return originalListen.apply(this, args);
    const call = parseListenArgs(args);
    if (!call.address) return originalListen.apply(this, args);
    const address = call.address;
    // A server listening again (after its close()) on port 0 keeps its name, hence its port.
    const previous = s.names.get(this);
    const portZero = 'port' in address && address.port === 0;
    const name =
      previous !== undefined && portZero && previous === listenerName(address, Number(previous.split('#')[1]))
        ? previous
        : listenerName(address, portZero ? s.portZeroCalls++ : 0);
    if (call.callback) this.once('listening', call.callback);
    // A re-listen adds no listener: it does not put readiness off (an app that re-listens more
    // often than quietMs would never become ready).
    if (previous === undefined) pending(s);
    else s.pending++;
    s.internal.add(this);
    void adopt(s, this, name, address);
    return this;
  } as typeof net.Server.prototype.listen;
  hookDatagramBind(s);
  hookWebSocketServers(s);
  s.socketIo = hookSocketIo(options.appEntry);
  installSignals(s);
  // An app that never listens is reported instead of hanging unnoticed.
  const neverListened = setTimeout(() => {
    if (s.generation || librarySessionStarted()) return;
    const err = new BatonError('ERR_BATON_READY_TIMEOUT', `the app never called listen() within ${options.readyTimeoutMs} ms`);
    options.report('failed', { code: err.code, message: err.message }, err.message);
    process.exitCode = 1;
    process.exit();
  }, options.readyTimeoutMs);
  neverListened.unref();
}

/**
 * Data consistency mode: runs the handover conversation up to the state now,
 * before the app's main module is evaluated (the preload awaits it), so the
 * predecessor has stopped taking requests and finished those in flight before
 * the app loads its data. Resolves with false (after reporting why) when this
 * generation cannot start; the predecessor then serves on.
 */
export async function startBeforeApp(): Promise<boolean> {
  const s = state;
  if (!s) throw new BatonError('ERR_BATON_INVALID_PHASE', 'startBeforeApp(): zero-code adoption is not installed');
  try {
    const g = await generationOf(s);
    if (g.predecessorPid !== undefined) {
      s.options.report(
        'quiesced',
        { predecessorPid: g.predecessorPid },
        `predecessor pid ${g.predecessorPid} quiesced: no request in flight; loading the app`,
      );
    }
    return true;
  } catch (err) {
    const e = asError(err);
    s.options.report('failed', { code: (e as BatonError).code, message: e.message }, `not started: ${e.message}`);
    return false;
  }
}

/** BATON_CLOSE_UPGRADED=0: upgraded connections (and socket.io sessions) that cannot migrate wait for the drain timeout. */
function closeUpgraded(): boolean {
  return process.env.BATON_CLOSE_UPGRADED !== '0';
}

function generationOf(s: State): Promise<Generation> {
  if (s.generation) return s.generation;
  // From the first listen() on, the app may declare the generation ready (adoptedReady(), host.ts);
  // it resolves once the predecessor, if any, has stopped accepting (harmless with `ready: 'auto'`).
  registerAdoptedReady(() => ready(s));
  s.generation = start({
    name: s.options.name,
    socketDir: s.options.socketDir,
    acceptBeforeReady: true,
    consistency: s.options.consistency,
    // The app's time to be ready is also how long this generation, as a predecessor, waits for a successor's.
    readyTimeoutMs: s.options.readyTimeoutMs,
    ...(s.options.livenessMs === undefined ? {} : { livenessTimeoutMs: s.options.livenessMs }),
    ...(s.options.maxGenerations === undefined ? {} : { maxGenerations: s.options.maxGenerations }),
    app: s.options.appEntry,
    // Under the supervisor the master names the slot: a reload may run another app on purpose (a new `app:`).
    namedOnPurpose: s.options.namedOnPurpose === true || s.host !== undefined,
    // BATON_CLOSE_UPGRADED=0 holds upgraded connections that cannot migrate until the drain timeout.
    closeUpgraded: closeUpgraded(),
    // BATON_TLS_TICKET_KEYS=0 (`baton run --no-tls-ticket-keys`): TLS session-ticket keys stay in each generation.
    tlsTicketKeys: process.env.BATON_TLS_TICKET_KEYS !== '0',
  }).then((g) => {
    watch(s, g);
    // BATON_SOCKETIO_STORE=0 keeps socket.io's recovery store in the old generation.
    s.socketIo?.attach(g, { closeSessions: closeUpgraded(), handStore: process.env.BATON_SOCKETIO_STORE !== '0' });
    for (const { wss, key } of s.websockets) registerWebSockets(g, wss, key);
    s.websockets = [];
    return g;
  });
  return s.generation;
}

async function adopt(s: State, server: net.Server, name: string, address: Parameters<Generation['listen']>[1]): Promise<void> {
  const again = s.names.has(server);
  try {
    const g = await generationOf(s);
    if (g.phase === 'draining' || g.phase === 'exited' || g.phase === 'failed') {
      // A re-listen in a generation that hands over: the successor accepts on this address now.
      s.options.report('listen-ignored', { listener: name, phase: g.phase }, `listen() on ${name} ignored: generation is ${g.phase}`);
      return;
    }
    const listener = await g.listen(name, address, server);
    s.names.set(server, name);
    // Under the supervisor, a listener the master did not have is handed to it
    // (a copy of the listening socket), so the other workers and the next
    // master accept on the same socket instead of failing with EADDRINUSE.
    if (!again && listener.origin === 'bound') s.host?.listenerBound?.(name, server);
    // A raw net server: its connections migrate alive and reach the next
    // generation's app as new 'connection's (bytes it had not read yet included).
    if (Object.getPrototypeOf(server) === net.Server.prototype) {
      g.migrateSockets(name, { state: () => null, adopt: (socket) => void server.emit('connection', socket) });
    }
    s.options.report(
      'listening',
      { listener: name, port: listener.port, origin: listener.origin },
      `listener ${name} (${listener.origin}${listener.port ? `, port ${listener.port}` : ''})`,
    );
  } catch (err) {
    // As Node reports EADDRINUSE: an 'error' event on the server.
    process.nextTick(() => server.emit('error', asError(err)));
  } finally {
    // Later listen() calls of the app on this server (after its close()) are the app's again.
    s.internal.delete(server);
    settled(s, again);
  }
}

/** One listen() or bind() is done: with none pending, readiness comes `quietMs` later (`again`: a re-listen, which does not put it off). */
function settled(s: State, again: boolean): void {
  s.pending--;
  if (s.options.ready === 'auto' && s.pending === 0 && !s.readyCalled && (!again || s.quietTimer === undefined)) {
    clearTimeout(s.quietTimer);
    s.quietTimer = setTimeout(() => void ready(s), s.options.quietMs);
  }
}

/** A listen() or bind() began: readiness waits for it. */
function pending(s: State): void {
  s.pending++;
  clearTimeout(s.quietTimer);
  s.quietTimer = undefined;
}

/**
 * Wraps `dgram.Socket.prototype.bind`: an app's explicit bind() becomes the
 * datagram listener named by its type, address and port (by order for port
 * 0), inherited across upgrades. Node's own bind of a socket that sends or
 * connects unbound (a client) and a bind to an fd are left alone.
 */
function hookDatagramBind(s: State): void {
  const originalBind = dgram.Socket.prototype.bind as unknown as Bind;
  dgram.Socket.prototype.bind = function bind(this: dgram.Socket, ...args: unknown[]): dgram.Socket {
    const type = datagramType(this);
    if (s.internalDatagrams.has(this) || (librarySessionStarted() && !s.generation) || (type !== 'udp4' && type !== 'udp6')) {
      return originalBind.apply(this, args);
    }
    const call = parseBindArgs(type, args);
    if (!call.address) return originalBind.apply(this, args);
    const address = call.address;
    const name = datagramListenerName(address, address.port ? 0 : s.portZeroBinds[type]++);
    if (call.callback) this.once('listening', call.callback);
    pending(s);
    s.internalDatagrams.add(this);
    void adoptDatagram(s, this, name, address);
    return this;
  } as typeof dgram.Socket.prototype.bind;
}

async function adoptDatagram(s: State, socket: dgram.Socket, name: string, address: DatagramAddress): Promise<void> {
  try {
    const g = await generationOf(s);
    await g.listenDatagram(name, address, socket);
    const bound = socket.address();
    const origin = g.getDatagramListeners().find((l) => l.socket === socket)?.origin;
    // Under the supervisor, a socket the master did not have is handed to it (a copy), so the
    // other workers and the next master read the same socket instead of failing with EADDRINUSE.
    if (origin === 'bound') s.host?.listenerBound?.(name, socket);
    s.options.report('listening', { listener: name, port: bound.port, origin }, `listener ${name} (port ${bound.port})`);
  } catch (err) {
    // As Node reports EADDRINUSE: an 'error' event on the socket.
    process.nextTick(() => socket.emit('error', asError(err)));
  } finally {
    s.internalDatagrams.delete(socket);
    settled(s, false);
  }
}

async function ready(s: State): Promise<void> {
  if (s.readyCalled || !s.generation) return;
  s.readyCalled = true;
  const g = await s.generation;
  try {
    await g.ready();
    s.options.report(
      'ready',
      { generation: g.number, origin: g.origin, listeners: g.getListeners().length },
      `generation ${g.number} (${g.origin}) ready with ${g.getListeners().length} listener(s)`,
    );
  } catch (err) {
    s.options.report('failed', { message: asError(err).message }, `not ready: ${asError(err).message}`);
  }
}

/** The host's side of the generation's life: report, and end the process once it has drained. */
function watch(s: State, g: Generation): void {
  const r = s.options.report;
  g.on('upgrade', (u) => r('upgrade', { successorPid: u.successorPid, via: u.via }, `handing over to pid ${u.successorPid} (${u.via})`));
  g.on('upgrade-failed', (err) =>
    r('upgrade-failed', { code: (err as BatonError).code, message: err.message }, `upgrade failed, serving on: ${err.message}`),
  );
  g.on('failed', (err) => r('failed', { message: err.message }, `failed: ${err.message}`));
  g.on('phase', (p) => {
    // The moment this generation stopped accepting and reading (its successor is ready, or stop()).
    if (p === 'draining') r('draining', { generation: g.number }, `generation ${g.number} stopped accepting; draining`);
  });
  g.on('drained', (d) => r('drained', { ...d }, `drained: ${d.migrated} migrated, ${d.drained} closed cleanly, ${d.forced} cut`));
  const end = () => {
    // The app's own shutdown code runs now, in the old generation, after the drain.
    const appHandlers = process.listeners('SIGTERM').filter((l) => l !== onSignal);
    const exit = () => {
      process.exit();
    };
    if (appHandlers.length === 0) return exit();
    // An app handler that does not exit does not keep the old generation alive.
    setTimeout(exit, Defaults.killGraceMs);
    for (const h of appHandlers) (h as (sig: string) => void)('SIGTERM');
  };
  g.on('phase', (p) => {
    if (p === 'exited' || p === 'failed') end();
  });
}

let onSignal: (signal: NodeJS.Signals) => void = () => undefined;

/** TERM/INT stop the generation gracefully — unless the app handles them itself. */
function installSignals(s: State): void {
  onSignal = (signal) => {
    const others = process.listeners(signal).filter((l) => l !== onSignal);
    if (others.length > 0) return; // the app's own handler decides
    if (!s.generation) {
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    }
    void s.generation.then((g) => g.stop());
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * ws's WebSocketServer stores its settings in `this.options` at the end of its
 * constructor, whatever its mode (`server`, `port`, `noServer`): a setter on
 * the prototype learns every WebSocketServer the app creates, before any
 * client connects, and registers it for migration. Each is keyed by its
 * creation order in the process (`ws#0`, `ws#1`, …), which is how a migrated
 * WebSocket finds its server in the next generation: an app that creates its
 * servers in the same order (the same code, or a version that adds servers
 * after the existing ones) gets each WebSocket back on the server that had it.
 */
function hookWebSocketServers(s: State): void {
  let proto: object | undefined;
  try {
    const ws = createRequire(s.options.appEntry)('ws') as { WebSocketServer?: { prototype: object } };
    proto = ws.WebSocketServer?.prototype;
  } catch {
    return; // the app does not use ws
  }
  if (!proto || Object.getOwnPropertyDescriptor(proto, 'options')) return;
  Object.defineProperty(proto, 'options', {
    configurable: true,
    get: () => undefined,
    set(this: object, options: unknown) {
      Object.defineProperty(this, 'options', { value: options, writable: true, configurable: true, enumerable: true });
      onWebSocketServer(s, this);
    },
  });
}

function onWebSocketServer(s: State, wss: object): void {
  if (librarySessionStarted() && !s.generation) return; // the app drives baton itself
  const key = `ws#${s.websocketCount++}`;
  if (s.generation) void s.generation.then((g) => registerWebSockets(g, wss, key));
  else s.websockets.push({ wss, key });
}

/**
 * engine.io (socket.io) runs its own `noServer` WebSocketServer; its sessions
 * (handshake, heartbeats, packet buffers) live in engine.io's memory and cannot
 * move with the socket, so its WebSockets are not followed: once the successor
 * is ready they are closed with 1012 and socket.io's client reconnects there.
 * engine.io marks every request of its protocol with the `EIO` query parameter.
 */
function isEngineIo(req: http.IncomingMessage): boolean {
  return /[?&]EIO=/.test(req.url ?? '');
}

/**
 * Migrates the WebSockets of `wss`, whichever listener their upgrade arrived
 * on; the next generation's app sees each one as a new 'connection' of the
 * server with the same key, with the original request's URL and headers.
 */
function registerWebSockets(g: Generation, wss: object, key: string): void {
  g.migrateWebSockets(null, wss, {
    key,
    follows: (req) => !isEngineIo(req),
    adopt: (ws, _state, request) => {
      const socket = webSocketSocket(ws as WsLike) ?? new net.Socket();
      const req = new http.IncomingMessage(socket);
      req.method = 'GET';
      req.url = request?.url ?? '/';
      req.headers = request?.headers ?? {};
      (wss as { emit(e: string, ...a: unknown[]): boolean }).emit('connection', ws, req);
    },
  });
}
