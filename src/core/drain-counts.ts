/** A drain's counts of connections by protocol: what each drain reports, and totals across drains (a master's counters, metrics). */

/**
 * The protocol a connection speaks, for the drain's counts by protocol: `http1` (HTTP/1.x),
 * `http2` (h2c sessions), `websocket` (a connection upgraded off HTTP/1.1: WebSocket, or any
 * other `Upgrade`), `tls` (a TLS server's connection, HTTPS included), `socket` (raw TCP or
 * unix). The names of migration kinds (migrate/kinds.ts) where both exist.
 */
export type ConnectionProtocol = 'http1' | 'http2' | 'websocket' | 'tls' | 'socket';

/** How a drain's connections left, by protocol (migrated, ended by themselves, destroyed). */
export type DrainByProtocol = Record<string, { migrated: number; drained: number; forced: number }>;

/** Adds the counts of `from` to `into` (totals across drains: a master's counters, a generation's metrics). */
export function addByProtocol(into: DrainByProtocol, from: DrainByProtocol | undefined): void {
  for (const [p, c] of Object.entries(from ?? {})) {
    const t = (into[p] ??= { migrated: 0, drained: 0, forced: 0 });
    t.migrated += c.migrated;
    t.drained += c.drained;
    t.forced += c.forced;
  }
}
