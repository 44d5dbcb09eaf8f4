/**
 * socket.io under zero-code adoption. engine.io sessions cannot move with
 * their sockets (docs/zero-code.md, "WebSocket and socket.io"), so at the
 * cutover the old generation closes every one of them and socket.io-client
 * reconnects to the successor. This module makes that reconnect lossless:
 *
 * - **Long-polling sessions** (not upgraded yet, or `transports: ['polling']`)
 *   are closed at the cutover too — engine.io's own close: the pending poll
 *   answers with a close packet after what was queued for the client — and a
 *   session that still opens in the old generation afterwards (a handshake
 *   already in flight on a connection it was serving) is closed at once. Its
 *   WebSockets are closed by the drain (1012, connection-tracker.ts).
 * - **connectionStateRecovery**: when the app enabled it, socket.io's
 *   in-memory store (each namespace adapter's `sessions` and `packets`:
 *   persisted sessions and the broadcasts they may have missed) is complete
 *   only once the old generation closed its sessions — once each was sent
 *   its close (not once its client answered it: a slow client would hold
 *   everyone's restore; see `sealed`), at most 2 s; it travels to the
 *   successor as late state (`handOverLate('socket.io')`, after Draining).
 *   The successor holds every `restoreSession()` until that delivery came
 *   (or no predecessor drains into it, or `helloTimeoutMs`), so a client
 *   that reconnects fast is not treated as new: it gets `socket.recovered`,
 *   its id, rooms, `socket.data` and the broadcasts it missed.
 *
 * Baton does not turn recovery on for an app that did not: it changes what
 * the app sees (recovered sockets skip middlewares by default, keep their id,
 * and every broadcast is kept in memory for `maxDisconnectionDuration`).
 * Stores other than socket.io's in-memory adapter (Redis, Postgres, …) are
 * shared by all processes already and are left alone.
 *
 * Hooks are installed on the app's own copy of socket.io-adapter (found from
 * the app's socket.io) before its code runs: a setter on the adapter's
 * prototype learns every namespace adapter as its constructor sets `rooms`.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { debuglog } from 'node:util';
import type { Generation } from '../generation.js';
import { StrandedPolls, type PollingSessionLike } from './socketio-polls.js';

/** The parts of an engine.io session used here. */
interface EngineSocketLike extends PollingSessionLike {
  close(): void;
}

/** The parts of an engine.io server used here. */
interface EngineLike {
  clients: Record<string, EngineSocketLike>;
  on(event: 'connection', listener: (socket: EngineSocketLike) => void): unknown;
}

/** A socket.io socket still connected when the store is taken. */
interface SioSocketLike {
  id: string;
  pid?: string;
  rooms: Set<string>;
  data: unknown;
  /** Its engine.io session: for a WebSocket, `transport.socket` is the `ws` WebSocket. */
  conn?: { readyState?: string; transport?: { name?: string; socket?: { readyState?: number } } };
}

/** A persisted session of socket.io's SessionAwareAdapter. */
interface Session {
  sid: string;
  pid: string;
  rooms: string[];
  data: unknown;
  disconnectedAt: number;
}

/** A broadcast kept by socket.io's SessionAwareAdapter. */
interface PersistedPacket {
  id: string;
  emittedAt: number;
  data: unknown[];
  opts: { rooms: Set<string>; except: Set<string>; flags?: Record<string, unknown> };
}

/** A namespace adapter (socket.io-adapter's in-memory Adapter; SessionAwareAdapter adds sessions and packets). */
interface AdapterLike {
  nsp: { name: string; sockets: Map<string, SioSocketLike>; server: { engine?: EngineLike } };
  sessions?: Map<string, Session>;
  packets?: PersistedPacket[];
}

/** The store of one namespace as it travels (JSON). */
interface NamespaceStore {
  nsp: string;
  sessions: Session[];
  packets: { id: string; emittedAt: number; data: unknown; opts: { rooms: string[]; except: string[]; flags?: unknown } }[];
}

/** What travels under the late-state key `socket.io`. */
interface Store {
  namespaces: NamespaceStore[];
  /** Stranded long-poll answers by session id, one payload per poll (socketio-polls.ts; a string from an earlier version). */
  stranded?: Record<string, string[] | string>;
}

const debug = debuglog('baton:socketio');
const KEY = 'socket.io';
/** The longest the old generation waits for its sessions to be closed before taking the store (those still open are included). */
const CLOSE_WAIT_MS = 2_000;
const BINARY = '__baton_binary__';
/** ws's readyState OPEN (the close frame not sent yet). */
const WS_OPEN = 1;

/** The socket.io of one process, once {@link hookSocketIo} found it. */
export interface SocketIoHooks {
  /**
   * Ties the hooks to the process's generation: its drain into a successor
   * closes the sessions (`closeSessions`: false leaves them to the drain
   * timeout, as BATON_CLOSE_UPGRADED=0 does for WebSockets) and hands the
   * recovery store over (`handStore`: false keeps it here, BATON_SOCKETIO_STORE=0);
   * as a successor it takes its predecessor's store.
   */
  attach(g: Generation, options: { closeSessions: boolean; handStore: boolean }): void;
}

/**
 * Finds the app's socket.io (from `appEntry`) and hooks its adapter; returns
 * undefined when the app does not use socket.io 4 (nothing is hooked).
 */
export function hookSocketIo(appEntry: string): SocketIoHooks | undefined {
  let adapterModule: { Adapter?: { prototype: object }; SessionAwareAdapter?: { prototype: object } };
  let adapterPath: string;
  let sioRequire: NodeJS.Require;
  try {
    sioRequire = createRequire(createRequire(appEntry).resolve('socket.io'));
    adapterPath = sioRequire.resolve('socket.io-adapter');
    adapterModule = sioRequire(adapterPath) as typeof adapterModule;
  } catch {
    return undefined; // the app does not use socket.io
  }
  const adapterProto = adapterModule.Adapter?.prototype;
  if (!adapterProto || Object.getOwnPropertyDescriptor(adapterProto, 'rooms')) return undefined;

  uniqueOffsets(adapterPath);
  const polls = StrandedPolls.hook(sioRequire);
  const adapters = new Set<AdapterLike>();
  /** Stores delivered by the predecessor for namespaces whose adapter was not seen yet. */
  const pending = new Map<string, NamespaceStore>();
  let settled: () => Promise<void> = () => Promise.resolve();

  const apply = (adapter: AdapterLike): void => {
    const store = pending.get(adapter.nsp.name);
    if (!store || !adapter.sessions || !adapter.packets) return;
    pending.delete(adapter.nsp.name);
    merge(adapter, store);
  };

  Object.defineProperty(adapterProto, 'rooms', {
    configurable: true,
    get: () => undefined,
    set(this: AdapterLike, rooms: unknown) {
      Object.defineProperty(this, 'rooms', { value: rooms, writable: true, configurable: true, enumerable: true });
      adapters.add(this);
    },
  });

  const sessionProto = adapterModule.SessionAwareAdapter?.prototype as
    { restoreSession?: (this: AdapterLike, pid: string, offset: string) => unknown } | undefined;
  const restore = sessionProto?.restoreSession;
  if (sessionProto && typeof restore === 'function') {
    // Hold a restore until the predecessor's store is here: the session may be one it is handing over.
    sessionProto.restoreSession = async function restoreSession(this: AdapterLike, pid: string, offset: string) {
      const held = performance.now();
      await settled();
      debug('restore of %s held %d ms', pid, Math.round(performance.now() - held));
      apply(this);
      return restore.call(this, pid, offset);
    };
  }

  return {
    attach(g, { closeSessions, handStore }) {
      let cutover = false;
      const engines = () => new Set([...adapters].map((a) => a.nsp.server.engine).filter((e): e is EngineLike => e !== undefined));
      const watched = new WeakSet<EngineLike>();
      const handle = g.handOverLate(KEY, {
        provide: async () => {
          cutover = closeSessions;
          const stranded: Record<string, string[]> = {};
          if (closeSessions) {
            for (const engine of engines()) {
              const sessions = Object.values(engine.clients);
              // Before the close: what each session without a pending poll queued is still in its buffer.
              if (polls) Object.assign(stranded, StrandedPolls.collect(sessions));
              // WebSockets are the drain's (1012); long-polling sessions are closed here.
              for (const socket of sessions) if (socket.transport?.name === 'polling') socket.close();
              if (watched.has(engine)) continue;
              watched.add(engine);
              engine.on('connection', (socket) => {
                if (cutover) socket.close();
              });
            }
          }
          for (const a of adapters) apply(a);
          const recovering = [...adapters].filter((a) => a.sessions instanceof Map && Array.isArray(a.packets));
          const strandedCount = Object.keys(stranded).length;
          if (strandedCount > 0) debug('%d long-polling sessions had no poll pending', strandedCount);
          if (recovering.length === 0 || !handStore) return strandedCount > 0 ? ({ namespaces: [], stranded } satisfies Store) : undefined;
          const started = performance.now();
          if (closeSessions) await closed(recovering);
          const store = { namespaces: recovering.map(take), stranded } satisfies Store;
          debug(
            'store taken %d ms after the cutover: %d sessions (%d still closing), %d packets',
            Math.round(performance.now() - started),
            store.namespaces.reduce((n, x) => n + x.sessions.length, 0),
            recovering.reduce((n, a) => n + a.nsp.sockets.size, 0),
            store.namespaces.reduce((n, x) => n + x.packets.length, 0),
          );
          return store;
        },
        receive: (value) => {
          polls?.receive((value as Store | null)?.stranded);
          for (const store of (value as Store | null)?.namespaces ?? []) pending.set(store.nsp, store);
          for (const a of adapters) apply(a);
        },
      });
      settled = () => handle.settled();
      polls?.settleWith(settled);
      // A rollback serves on: new sessions are welcome again.
      g.on('phase', (p) => {
        if (p === 'serving') cutover = false;
      });
    },
  };
}

/**
 * socket.io names each kept broadcast by the time it was emitted (yeast:
 * milliseconds, plus a counter within one), and a client reconnects with the
 * name of the last one it got as its offset. Two generations broadcasting in
 * the same millisecond produce the same name, and in the merged store the
 * offset would then point at the wrong broadcast (the client would miss or
 * repeat some). So in a process under baton every name gets a suffix of this
 * process's own (a client treats the offset as an opaque string).
 */
function uniqueOffsets(adapterPath: string): void {
  try {
    const yeast = createRequire(adapterPath)(join(dirname(adapterPath), 'contrib', 'yeast.js')) as { yeast?: () => string };
    const original = yeast.yeast;
    if (typeof original !== 'function') return;
    const tag = randomBytes(6).toString('base64url');
    yeast.yeast = () => `${original()}~${tag}`;
  } catch {
    // Another layout of socket.io-adapter: names stay as they are.
  }
}

/**
 * Whether nothing more of this generation can reach `socket`'s client, so
 * its session and the broadcasts it got are final: its WebSocket sent the
 * close frame (ws: CLOSING or CLOSED; nothing is sent after it), or its
 * engine.io session left 'open' (a closing session sends and reads no
 * packet). Its closing handshake may still be under way: that is the
 * client's pace (a client slow to answer the close frame, or one that never
 * does, until ws's 30 s close timeout), and waiting for it held every
 * reconnecting client's restore with it.
 */
function sealed(socket: SioSocketLike): boolean {
  const conn = socket.conn;
  if (!conn) return false;
  if (conn.readyState !== undefined && conn.readyState !== 'open') return true;
  const ws = conn.transport?.name === 'websocket' ? conn.transport.socket : undefined;
  return ws?.readyState !== undefined && ws.readyState !== WS_OPEN;
}

/** Resolves once every socket of `adapters` is sealed ({@link sealed}) or gone, or after CLOSE_WAIT_MS. */
async function closed(adapters: AdapterLike[]): Promise<void> {
  const deadline = performance.now() + CLOSE_WAIT_MS;
  const open = () => adapters.some((a) => [...a.nsp.sockets.values()].some((s) => !sealed(s)));
  while (open() && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One namespace's store as it travels; sockets still connected count as sessions disconnected now. */
function take(adapter: AdapterLike): NamespaceStore {
  const sessions = [...adapter.sessions!.values()];
  for (const socket of adapter.nsp.sockets.values()) {
    if (socket.pid === undefined) continue;
    sessions.push({ sid: socket.id, pid: socket.pid, rooms: [...socket.rooms], data: socket.data, disconnectedAt: Date.now() });
  }
  return {
    nsp: adapter.nsp.name,
    sessions: sessions.map((s) => ({ ...s, data: encode(s.data) })),
    packets: adapter.packets!.map((p) => ({
      id: p.id,
      emittedAt: p.emittedAt,
      data: encode(p.data),
      opts: { rooms: [...p.opts.rooms], except: [...p.opts.except], flags: p.opts.flags },
    })),
  };
}

/**
 * Adds a predecessor's store to `adapter`'s: sessions this generation does
 * not have, and the broadcasts before this generation's own (they were
 * emitted earlier), skipping any it has already.
 */
function merge(adapter: AdapterLike, store: NamespaceStore): void {
  const sessions = adapter.sessions!;
  for (const s of store.sessions) if (!sessions.has(s.pid)) sessions.set(s.pid, { ...s, data: decode(s.data) });
  const known = new Set(adapter.packets!.map((p) => p.id));
  const earlier: PersistedPacket[] = store.packets
    .filter((p) => !known.has(p.id))
    .map((p) => ({
      id: p.id,
      emittedAt: p.emittedAt,
      data: decode(p.data) as unknown[],
      opts: { rooms: new Set(p.opts.rooms), except: new Set(p.opts.except), flags: p.opts.flags as Record<string, unknown> | undefined },
    }));
  adapter.packets!.unshift(...earlier);
}

/** JSON for a value of socket.io's: binary (Buffer, typed arrays, ArrayBuffer) as base64 under a marker key. */
function encode(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { [BINARY]: value.toString('base64') };
  if (ArrayBuffer.isView(value)) return { [BINARY]: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  if (value instanceof ArrayBuffer) return { [BINARY]: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(encode);
  if (value !== null && typeof value === 'object') {
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  }
  return value;
}

/** The reverse of {@link encode}: binary comes back as a Buffer (what socket.io's parser gives for binary too). */
function decode(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decode);
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === BINARY && typeof o[BINARY] === 'string') return Buffer.from(o[BINARY], 'base64');
    return Object.fromEntries(keys.map((k) => [k, decode(o[k])]));
  }
  return value;
}
