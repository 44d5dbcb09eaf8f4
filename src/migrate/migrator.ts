/**
 * The predecessor's migration for one drain: which connections can leave and
 * how — asked of the kinds of the registry (kinds.ts) — batched by an
 * {@link Emigration}.
 */
import type net from 'node:net';
import { BatonError, isBatonError } from '../core/errors.js';
import type { FramePeer } from '../protocol/frame-peer.js';
import { Emigration } from './emigration.js';
import type { AppMigrations, DepartureHost, Departures, MigrationKind, Migrator } from './kind.js';
import { migrationKinds } from './kinds.js';

/** What the migrator needs of its generation. */
export interface MigratorHost extends AppMigrations {
  settings: {
    migrateTimeoutMs: number;
    migrateBatchSize: number;
    maxFrameBytes: number;
    migrateAfterResponse: boolean;
    closeUpgraded: boolean;
  };
  /** The listener name of a tracked server. */
  nameOf(server: net.Server): string | undefined;
  /** A connection that could not leave stays and drains here. */
  keep(socket: net.Socket): void;
  /** The generation's parked connections (they leave with the HTTP/1.1 kind). */
  parking: DepartureHost['parking'];
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
  const departureHost: DepartureHost = {
    emigration,
    timeoutMs: s.migrateTimeoutMs,
    afterResponse: s.migrateAfterResponse,
    closeUnmovable: s.closeUpgraded,
    nameOf: (server) => host.nameOf(server),
    socketHandlers: (name) => host.socketHandlers(name),
    websockets: host.websockets,
    keep: (socket) => host.keep(socket),
    parking: host.parking,
    warn: (err) => host.onWarning(err),
  };
  // Every kind takes part in the drain: one accepts servers, another finds its connections itself.
  const departures = new Map<MigrationKind, Departures>(migrationKinds.map((k) => [k, k.depart(departureHost)]));
  const migrator: Migrator = {
    get migrated() {
      return emigration.migrated;
    },
    get migratedByKind() {
      return emigration.migratedByKind;
    },
    departuresFor(server) {
      const name = host.nameOf(server);
      if (name === undefined) return undefined;
      const kind = migrationKinds.find((k) => k.accepts(server, name, host));
      return kind && departures.get(kind);
    },
    start: () => {
      for (const d of departures.values()) d.start?.();
    },
    stop: () => {
      for (const d of departures.values()) d.stop?.();
    },
  };
  return { migrator, emigration };
}
