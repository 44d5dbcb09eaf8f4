/**
 * The predecessor's migration policy for one drain: which connections can
 * leave (plain HTTP/1.1, h2c sessions, and raw sockets of servers registered
 * with migrateSockets) and how each is offered to the successor, batched by an
 * {@link Emigration}.
 */
import http from 'node:http';
import type net from 'node:net';
import { BatonError, isBatonError } from '../core/errors.js';
import { debuglog } from 'node:util';
import { isH2cServer, type Migrator } from '../drain/connection-tracker.js';
import type { FramePeer } from '../protocol/frame-peer.js';
import { Emigration, type SocketMigration } from './emigration.js';
import { offerHttp2Session } from './http2-session.js';
import { offerRawSocket } from './raw-socket.js';
import { closeWebSocket, offerWebSocket, type WebSocketRegistry } from './websocket.js';

const debug = debuglog('baton:migrate');

/** What the migrator needs of its generation. */
export interface MigratorHost {
  settings: { migrateTimeoutMs: number; migrateBatchSize: number; maxFrameBytes: number; migrateAfterResponse: boolean };
  /** The listener name of a tracked server. */
  nameOf(server: net.Server): string | undefined;
  socketHandlers(name: string): SocketMigration | undefined;
  /** A connection that could not leave stays and drains here. */
  keep(socket: net.Socket): void;
  onBatch(info: { adopted: number; refused: number; withBytes: number }): void;
  onWarning(err: BatonError): void;
}

/** Builds the migrator of a drain into `successor`, and the emigration that carries the connections. */
export function createMigrator(successor: FramePeer, host: MigratorHost): { migrator: Migrator; emigration: Emigration } {
  const s = host.settings;
  const emigration = new Emigration(successor, {
    timeoutMs: s.migrateTimeoutMs,
    batchSize: s.migrateBatchSize,
    batchBytes: Math.floor(s.maxFrameBytes / 2),
    onReturn: (socket) => host.keep(socket),
    onBatch: (info) => host.onBatch(info),
    onBroken: (err, { migrated, kept, unacknowledged }) => {
      const timeout = isBatonError(err, 'ERR_BATON_MIGRATION_TIMEOUT');
      host.onWarning(
        new BatonError(
          timeout ? 'ERR_BATON_MIGRATION_TIMEOUT' : 'ERR_BATON_SUCCESSOR_LOST',
          `connection migration to ${successor.label} stopped (${err.message}): ${migrated} connections had been handed over` +
            (unacknowledged
              ? `, ${unacknowledged} more left with it unacknowledged (it holds them; reading them here too could corrupt them)`
              : '') +
            `; ${kept} stay here and drain, as does every connection not offered yet`,
          { cause: err },
        ),
      );
    },
  });
  const migrator: Migrator = {
    get migrated() {
      return emigration.migrated;
    },
    afterResponse: s.migrateAfterResponse,
    modeOf: (server) => {
      const name = host.nameOf(server);
      if (name === undefined) return undefined;
      if (host.socketHandlers(name)) return 'socket';
      if (isH2cServer(server)) return 'http2';
      // Plain HTTP/1.1: TLS session state cannot leave the process.
      return server instanceof http.Server ? 'http1' : undefined;
    },
    offerSession: (session, server, fallback) =>
      offerHttp2Session(emigration, session, host.nameOf(server)!, s.migrateTimeoutMs, (why) => {
        debug('an HTTP/2 session stays and gets GOAWAY: %s', why);
        fallback();
      }),
    offer: (socket, server, mode) => {
      const name = host.nameOf(server)!;
      if (mode === 'http1') return emigration.offer(socket, name, 'http1');
      return offerRawSocket(emigration, socket, name, host.socketHandlers(name)!, s.migrateTimeoutMs, (k) => host.keep(k));
    },
  };
  return { migrator, emigration };
}

/**
 * Offers every open WebSocket of the registered servers (at the start of a
 * migrating drain). One whose listener is unknown (its HTTP server is not a
 * listener of this generation) cannot travel: it is closed with 1012.
 */
export function offerWebSockets(
  emigration: Emigration,
  websockets: WebSocketRegistry,
  timeoutMs: number,
  keep: (socket: net.Socket) => void,
): void {
  for (const { ws, registration, listener, request } of websockets.open()) {
    if (listener !== undefined) {
      offerWebSocket(ws, emigration, listener, registration, request, timeoutMs, keep);
      continue;
    }
    if (ws._socket) keep(ws._socket);
    closeWebSocket(ws, timeoutMs);
  }
}
