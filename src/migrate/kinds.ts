/**
 * The registry of migration kinds: the one place that lists them. The
 * tracker, the migrator and the immigration find kinds here, by server (the
 * first kind in this order that accepts it) or by wire name.
 *
 * Adding a kind: write its file (`kind-<name>.ts`, one {@link MigrationKind})
 * and add it to {@link migrationKinds} below — see docs/architecture.md,
 * "Adding a migration kind".
 */
import type net from 'node:net';
import type { MigrationKind } from './kind.js';
import { h2cKind } from './kind-h2c.js';
import { http1Kind } from './kind-http1.js';
import { rawSocketKind } from './kind-raw-socket.js';
import { tlsKind } from './kind-tls.js';
import { webSocketKind } from './kind-websocket.js';

/**
 * Every kind, in the order servers are matched: TLS servers first (their
 * connections cannot leave, whatever the app registered: they are closed at
 * their boundary), then raw sockets (a listener the app registered with
 * migrateSockets moves its connections raw, whatever its server), then h2c,
 * then HTTP/1.1. The WebSocket kind finds its connections itself.
 */
export const migrationKinds: readonly MigrationKind[] = [tlsKind, rawSocketKind, h2cKind, http1Kind, webSocketKind];

const byName = new Map(migrationKinds.map((k) => [k.name, k]));

/** The kind of a Connections entry, by its wire name; undefined for one this build does not know. */
export function kindNamed(name: string): MigrationKind | undefined {
  return byName.get(name);
}

/** Lets every kind prepare a server the tracker starts following, before it accepts. */
export function prepareServer(server: net.Server): void {
  for (const kind of migrationKinds) kind.prepare?.(server);
}

/**
 * Closes gracefully an upgraded connection that does not migrate (during a
 * drain into a ready successor): the kind of its protocol closes it (a `ws`
 * WebSocket with 1012, Service Restart, after the answers to what it
 * received); any other protocol gets a FIN once its writes flushed (`end()`).
 */
export function closeUpgraded(socket: net.Socket, timeoutMs: number): void {
  for (const kind of migrationKinds) if (kind.closeGracefully?.(socket, timeoutMs)) return;
  if (!socket.writableEnded) socket.end();
}
