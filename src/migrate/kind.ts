/**
 * The shape of a migration kind: one way a live connection can move to the
 * successor (HTTP/1.1 keep-alive, h2c, WebSocket, raw TCP, …). Each kind is
 * one file (`kind-*.ts`) exporting one {@link MigrationKind}; the registry
 * (`kinds.ts`) lists them. The connection tracker, the migrator and the
 * immigration know kinds only through this interface and the registry.
 *
 * A kind answers three questions:
 * - **which connections** it moves: those of the servers it
 *   {@link MigrationKind.accepts} (asked once per server and drain, in
 *   registry order; the first kind that accepts a server takes its
 *   connections), or connections it finds itself ({@link Departures.start},
 *   e.g. the WebSockets of registered ws servers);
 * - **how a connection is offered at a boundary** in the predecessor: the
 *   tracker hands it over ({@link Departures.offer},
 *   {@link Departures.offerSession}); the kind waits for the connection's
 *   quiet point, freezes it and gives its fd, head and state to the
 *   {@link Emigration}, or lets it drain here;
 * - **how the successor adopts it** ({@link MigrationKind.adopt}), from the
 *   entry of a Connections frame and its fd.
 */
import type http2 from 'node:http2';
import net from 'node:net';
import type { BatonError } from '../core/errors.js';
import { closeQuietly } from '../native/socket-info.js';
import type { MigratedConnection } from '../protocol/frames.js';
import type { Emigration, SocketMigration } from './emigration.js';
import type { Parking } from './parking.js';
import type { WebSocketRegistry } from './websocket.js';

/** What the app registered for migration in a generation (both sides read it). */
export interface AppMigrations {
  /** The app's handlers for raw connections of listener `name` (Generation#migrateSockets). */
  socketHandlers(name: string): SocketMigration | undefined;
  /** The app's WebSocket servers registered for migration (Generation#migrateWebSockets). */
  readonly websockets: WebSocketRegistry;
}

/** What a kind may use in the predecessor during one migrating drain. */
export interface DepartureHost extends AppMigrations {
  /** Carries the offered connections to the successor (one per drain). */
  readonly emigration: Emigration;
  /** Bounds each wait for a boundary (migrateTimeoutMs). */
  readonly timeoutMs: number;
  /** The predecessor's `migrateAfterResponse`: an HTTP connection busy at the drain leaves after its response. */
  readonly afterResponse: boolean;
  /**
   * The predecessor's `closeUpgraded`: true, a connection that cannot leave
   * and would hold the drain open until `drainTimeoutMs` (an upgraded one, a
   * TLS one) is closed gracefully at its boundary at once, so its client
   * reconnects to the successor; false, it waits for the drain to end it.
   * A kind that closes connections it cannot move reads it here.
   */
  readonly closeUnmovable: boolean;
  /** The listener name of a server of the generation. */
  nameOf(server: net.Server): string | undefined;
  /** A connection that could not leave stays and drains here. */
  keep(socket: net.Socket): void;
  /** Idle connections adopted from the previous generation and held as bare fds (see Parking): they may leave too. */
  readonly parking: Pick<Parking, 'takeAll'>;
  /** Reports something that degrades the migration, as a `'warning'`. */
  warn(err: BatonError): void;
}

/**
 * One kind's part of one migrating drain (made by {@link MigrationKind.depart}).
 * The tracker calls `offer`/`offerSession` for the connections of the servers
 * the kind accepts, never for a connection it kept.
 */
export interface Departures {
  /**
   * A connection of a server this kind accepts: at the start of the drain,
   * when it arrives during it, and again after each response when
   * {@link Departures.afterResponse}. The kind offers it to the emigration at
   * its next boundary. False: it will not leave (the tracker drains it here).
   */
  offer?(socket: net.Socket, server: net.Server): boolean;
  /**
   * An HTTP/2 session of a server this kind accepts. False when it cannot
   * start leaving; `fallback` runs when it started but stays after all. Either
   * way the tracker then drains it with GOAWAY.
   */
  offerSession?(session: http2.ServerHttp2Session, server: net.Server, fallback: () => void): boolean;
  /**
   * True: a connection busy with a response when the drain starts (or that
   * gets a request during it) keeps `Connection: keep-alive` and is offered
   * again once the response finished. False or absent: the tracker answers
   * `Connection: close` instead.
   */
  readonly afterResponse?: boolean;
  /**
   * Called once, when the tracker has offered every connection it had at the
   * start of the drain: a kind that looks for boundaries once per event-loop
   * turn looks now, a kind that finds its connections itself offers them.
   */
  start?(): void;
  /** The drain ended early (a rollback): offer nothing more, drop what waits for a boundary. */
  stop?(): void;
}

/** What a kind may use in the successor to adopt a connection. */
export interface ArrivalHost extends AppMigrations {
  /** Holds an idle HTTP/1.1 connection as a bare fd until its client sends something (see Parking). */
  park(fd: number, server: net.Server, listener: string): void;
  /** Follows a socket the kind made for the next drain (the server's own 'connection' event does it otherwise). */
  track(socket: net.Socket, server: net.Server): void;
  /** Bounds waits after adoption (an HTTP/2 connection's fence). */
  readonly timeoutMs: number;
  /** A migrated connection lost after it was acknowledged (its bytes were not what was promised). */
  onLost(listener: string, why: string): void;
}

/** How an adoption ended: adopted (with the socket made for it, if any), or refused with a reason. */
export type Arrival = { adopted: true; socket?: net.Socket } | { adopted: false; reason: string };

/** Refuses a migrated connection: its fd is closed here, the connection stays with the predecessor. */
export function refuse(fd: number, reason: string): Arrival {
  closeQuietly(fd);
  return { adopted: false, reason };
}

/**
 * The successor's usual adoption of a migrated fd: a `net.Socket` on it, given
 * to `take` (which tracks it and hands it to the app). Either step failing
 * refuses the connection — the fd, or the socket made of it, is closed here,
 * which leaves the connection with the predecessor, untouched.
 */
export function adoptAsSocket(fd: number, take: (socket: net.Socket) => void): Arrival {
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, readable: true, writable: true });
  } catch (err) {
    return refuse(fd, (err as Error).message);
  }
  try {
    take(socket);
  } catch (err) {
    socket.destroy();
    return { adopted: false, reason: `adopting it threw: ${(err as Error).message}` };
  }
  return { adopted: true, socket };
}

/** One way connections migrate. Stateless: per-drain state lives in its {@link Departures}. */
export interface MigrationKind {
  /** Its name on the wire (a Connections entry's `kind`); never changes once released. */
  readonly name: string;
  /** What it moves, for messages ("HTTP/1.1 keep-alive connections"). */
  readonly description: string;
  /**
   * Predecessor: true when the connections of `server` (listener `listener`)
   * move as this kind. Asked once per server and drain, in registry order.
   */
  accepts(server: net.Server, listener: string, app: AppMigrations): boolean;
  /**
   * A server the tracker starts following, before it accepts: a kind whose
   * connections must be prepared from their start does it here (h2c:
   * advertise an empty header table, follow each session's streams).
   */
  prepare?(server: net.Server): void;
  /** Predecessor: this kind's part of a migrating drain. */
  depart(host: DepartureHost): Departures;
  /**
   * Successor: adopts `fd`, the connection of `entry`, for `server` (the
   * server of `entry.listener` here). Owns `fd` from the call on: it is
   * adopted or closed before this returns (refused: the connection stays with
   * the predecessor, untouched). May throw only before touching `fd`.
   */
  adopt(fd: number, entry: MigratedConnection, server: net.Server, host: ArrivalHost): Arrival;
  /**
   * Closes gracefully an upgraded connection of its protocol that does not
   * migrate (during a drain into a ready successor), so its client reconnects
   * there. False when `socket` is not of its protocol.
   */
  closeGracefully?(socket: net.Socket, timeoutMs: number): boolean;
}

/** The tracker's view of a migrating drain: which kind's departures take a server's connections. */
export interface Migrator {
  /** The departures of the kind that accepts `server`, or undefined (its connections drain: no kind takes them). */
  departuresFor(server: net.Server): Departures | undefined;
  /** Called once the tracker offered every connection it had at the start of the drain (see {@link Departures.start}). */
  start(): void;
  /** The drain ended early (a rollback): see {@link Departures.stop}. */
  stop(): void;
  /** Connections the successor adopted so far. */
  readonly migrated: number;
  /** The same by migration kind (`http1`, `http2`, `websocket`, `socket`). */
  readonly migratedByKind: Readonly<Record<string, number>>;
}
