/**
 * Every timeout and limit baton uses, named, with its default. All are
 * configurable through {@link StartOptions}; docs/architecture.md explains each.
 */
export const Defaults = {
  /** A peer on the upgrade socket must send its hello within this many ms. */
  helloTimeoutMs: 5_000,
  /** A successor must call ready() within this many ms of its hello, or it is aborted. */
  readyTimeoutMs: 30_000,
  /**
   * After a successor is ready, connections still open after this many ms are
   * closed (long-lived ones: WebSocket, raw TCP, stuck requests).
   */
  drainTimeoutMs: 30_000,
  /**
   * The successor must acknowledge each batch of migrated connections within
   * this many ms (counted from the previous acknowledgement: batches are pipelined).
   */
  migrateTimeoutMs: 10_000,
  /**
   * A successor that is ready must answer the predecessor's liveness Ping
   * within this many ms while the predecessor drains into it (pings go out
   * every quarter of this), and once more before the predecessor's drain ends.
   * One that does not is declared lost: it is killed and the predecessor rolls
   * back and serves. Keep it above the longest pause the app's event loop may
   * take (a frozen event loop cannot answer).
   */
  livenessTimeoutMs: 5_000,
  /**
   * Most connections sent to the successor in one Connections frame (one
   * acknowledgement each; up to MIGRATE_BATCHES_IN_FLIGHT frames in flight).
   * Small enough that the successor starts adopting early and the last batch
   * is short; large enough that the per-frame cost stays small.
   */
  migrateBatchSize: 1024,
  /**
   * A predecessor with datagram (UDP) listeners keeps them open for sending
   * at least this many ms after it stopped reading them (its successor's
   * ready), for replies to datagrams it read last — the drain ends no sooner.
   */
  datagramLingerMs: 1_000,
  /** An exec successor that was aborted gets SIGTERM, then SIGKILL after this many ms. */
  killGraceMs: 2_000,
  /**
   * Largest frame accepted on the upgrade channel before the peer's Hello (a
   * Hello is ~150 bytes; an Error frame a few hundred): a peer that has not
   * introduced itself cannot make this process buffer more. Frames after the
   * Hello may be up to maxFrameBytes.
   */
  preAuthFrameBytes: 8 * 1024,
  /** Largest frame accepted on the upgrade channel. */
  maxFrameBytes: 16 * 1024 * 1024,
  /**
   * Most generations of a server alive at once: the serving one and older
   * ones still draining (a long download, a slow request). An upgrade that
   * would make more is refused (ERR_BATON_TOO_MANY_GENERATIONS) and the
   * serving generation goes on; at least 2.
   */
  maxGenerations: 8,
  /** Largest app state (JSON, UTF-8 bytes) handed over. */
  maxStateBytes: 8 * 1024 * 1024,
} as const;

/**
 * Bounds of the supervisor's control socket (src/supervisor/control.ts): one
 * request line per connection, answered or cut off within these.
 */
export const ControlLimits = {
  /** From accept to a complete request line; then the peer gets an error line and is closed. */
  requestTimeoutMs: 5_000,
  /** Connections served at once; further ones are closed as soon as they are accepted. */
  maxConnections: 32,
  /** Largest request line (bytes). */
  maxRequestBytes: 64 * 1024,
} as const;
