/**
 * The supervisor master's metrics (config key `metrics`): the families of
 * the catalog, aggregated across its workers — totals from the master's
 * persisted counters and status (which asks every worker for its
 * connections over IPC), phase durations and migration batches from the
 * events each worker forwards over the same IPC channel (`observe` messages,
 * see supervisor/worker-link.ts).
 *
 * The endpoint's listening socket survives a binary upgrade like the app's
 * listeners: the old master passes it to the new one (inherited fd named
 * METRICS_FD_NAME, metrics-fd.ts). A master answers scrapes while it is the newest
 * one: a new master from its phase `running` on, the old one until it is
 * `superseded` (and again after a rollback, `running`). The socket never
 * closes, so a scrape is never refused, and a scrape in progress on the old
 * master finishes there.
 */
import type http from 'node:http';
import type { DrainByProtocol } from '../core/drain-counts.js';
import { closeQuietly, dupFd } from '../native/socket-info.js';
import { ChannelNames, subscribe, type BatchEvent, type PhaseEvent } from '../core/channels.js';
import { MetricSet, type LastUpgrade, type MetricsSnapshot } from './metric-set.js';
import { metricsServer } from './metrics-http.js';

/**
 * How long a scrape waits for each worker's connection count. A worker busy
 * serving may answer late; a scrape should not (Prometheus' timeout), so it
 * uses the worker's previous answer instead.
 */
const WORKER_ANSWER_MS = 100;

const MASTER_PHASES = ['starting', 'running', 'reloading', 'upgrading', 'superseded', 'standby', 'stopping', 'exited'] as const;

/** An event a worker forwards to its master (WorkerMessage `observe`). */
export type ObservedEvent = { channel: 'phase'; event: PhaseEvent } | { channel: 'batch'; event: BatchEvent };

/** A reload's or a binary upgrade's last outcome, as a master's status gives it. */
interface UpgradeOutcome {
  result: string;
  at: string;
}

/** Counters that outlive a master (the supervisor persists them in its state file; its status and these metrics read them). */
export interface MasterCounters {
  /** Reloads that started new workers (result done or failed). */
  reloads: number;
  /** Of those, reloads some of whose new workers failed. */
  reloadsFailed: number;
  /** Reloads refused (a bad config, a port in use, a master in the wrong phase): nothing changed. */
  reloadsRefused: number;
  /** Binary upgrades whose new master became ready. */
  upgrades: number;
  /** Binary upgrades whose new master failed, or exited after it was ready (a rollback). */
  upgradesFailed: number;
  restarts: number;
  migrated: number;
  drained: number;
  forced: number;
}

/**
 * What a scrape reads from the master's status (the supervisor's MasterStatus
 * has these fields): declared here, so the metrics depend on the shape they
 * read and not on the supervisor. A worker's `connections` is filled in with
 * its last answer when it did not answer in time.
 */
export interface MasterStatusView {
  phase: string;
  counters: MasterCounters;
  reload: { last: UpgradeOutcome | undefined; lastSuccessAt?: string | undefined };
  upgrade: { last: UpgradeOutcome | undefined; lastSuccessAt: string | undefined };
  crashLoop: readonly unknown[];
  /** The drain counters by protocol. */
  byProtocol: DrainByProtocol;
  workers: { pid: number; state: string; generation?: number | undefined; phase?: string | undefined; connections?: number | undefined }[];
}

/** The master's view of its metrics. Owns the metrics socket's fd; {@link MasterMetrics.close} closes it. */
export class MasterMetrics {
  readonly set: MetricSet;
  readonly #fd: number;
  #server: http.Server | undefined;
  readonly #unsubscribe: () => void;
  /** Each worker's last answered connection count, by pid. */
  #lastConnections = new Map<number, number>();

  private constructor(fd: number, name: string, status: (connectionsTimeoutMs: number) => Promise<MasterStatusView>) {
    this.#fd = fd;
    this.set = new MetricSet('master', async () => this.#snapshot(await status(WORKER_ANSWER_MS)), { app: name });
    // The master's phase durations, from the channel its phase machine publishes on (when observing is on).
    this.#unsubscribe = subscribe<PhaseEvent>(ChannelNames.phase, (e) => {
      if (e.role === 'master') this.set.observePhase('master', e.from, e.durationMs / 1000);
    });
  }

  /**
   * The master moved to phase `to`: the newest master answers scrapes — from
   * `running` on (also after a rollback), until `superseded`. Called by the
   * master's phase machine itself, not through the diagnostics channel, which
   * may be off.
   */
  onPhase(to: string): void {
    if (to === 'running') this.serve();
    else if (to === 'superseded') this.#pause();
  }

  /**
   * Opens the metrics endpoint on its socket: the one inherited from an old
   * master (`inheritedFd`), or else the one `bind()` binds (the master binds it
   * as it binds its listeners; a rejection — EADDRINUSE naming the address —
   * is this call's). Nothing is served until {@link MasterMetrics.serve}.
   * The returned metrics own the fd.
   */
  static async open(
    inheritedFd: number | undefined,
    bind: () => Promise<number>,
    name: string,
    status: (connectionsTimeoutMs: number) => Promise<MasterStatusView>,
  ): Promise<MasterMetrics> {
    const fd = inheritedFd ?? (await bind());
    const metrics = new MasterMetrics(fd, name, status);
    // A new master (it inherited the socket) waits for `running`; the first one answers at once.
    if (inheritedFd === undefined) metrics.serve();
    return metrics;
  }

  /** The socket to pass to a new master (stays owned by this one). */
  get fd(): number {
    return this.#fd;
  }

  /** Starts answering scrapes (idempotent; called when the master becomes `running`). */
  serve(): void {
    if (this.#server) return;
    this.#server = metricsServer(this.set);
    // The server gets a duplicate: closing it leaves this master's fd (and the socket) open.
    this.#server.listen({ fd: dupFd(this.#fd) });
  }

  /** The snapshot of `s`; a worker too busy to answer in time counts with its last answer. */
  #snapshot(s: MasterStatusView): MetricsSnapshot {
    const known = new Map<number, number>();
    for (const w of s.workers) {
      const n = w.connections ?? this.#lastConnections.get(w.pid);
      if (n !== undefined) known.set(w.pid, n);
      w.connections = n;
    }
    this.#lastConnections = known;
    return masterSnapshot(s);
  }

  /** Stops answering scrapes (a newer master answers them); scrapes in progress finish. The socket stays open. */
  #pause(): void {
    this.#server?.close();
    this.#server = undefined;
  }

  /** An event a worker forwarded. */
  observe(e: ObservedEvent): void {
    if (e.channel === 'phase') this.set.observePhase('worker', e.event.from, e.event.durationMs / 1000);
    else this.set.observeBatch(e.event);
  }

  /** Stops serving and closes the socket (this master's copy). */
  close(): void {
    this.#unsubscribe();
    this.#server?.close();
    this.#server = undefined;
    closeQuietly(this.#fd);
  }
}

function last(kind: string, outcome: { result: string; at: string } | undefined, lastSuccessAt: string | undefined): LastUpgrade[] {
  if (!outcome) return [];
  const successful = outcome.result === 'done' || outcome.result === 'resumed';
  return [
    { kind, successful, at: Date.parse(outcome.at), lastSuccessAt: lastSuccessAt === undefined ? undefined : Date.parse(lastSuccessAt) },
  ];
}

/** What a scrape of the master shows, from its status. */
function masterSnapshot(s: MasterStatusView): MetricsSnapshot {
  const c = s.counters;
  const workers: Record<string, number> = { starting: 0, ready: 0, stopping: 0 };
  for (const w of s.workers) workers[w.state] = (workers[w.state] ?? 0) + 1;
  delete workers.exited;
  const generations = s.workers.map((w) => w.generation).filter((g): g is number => g !== undefined);
  return {
    upgrades: [
      { kind: 'reload', result: 'done', count: c.reloads - c.reloadsFailed },
      { kind: 'reload', result: 'failed', count: c.reloadsFailed },
      { kind: 'reload', result: 'refused', count: c.reloadsRefused },
      { kind: 'binary', result: 'done', count: c.upgrades },
      { kind: 'binary', result: 'failed', count: c.upgradesFailed },
    ],
    last: [...last('reload', s.reload.last, s.reload.lastSuccessAt), ...last('binary', s.upgrade.last, s.upgrade.lastSuccessAt)],
    phases: [{ role: 'master', phase: s.phase, all: MASTER_PHASES }],
    connections: s.workers.map((w) => ({ generation: w.generation, phase: w.phase, count: w.connections ?? 0 })),
    migrated: c.migrated,
    drained: c.drained,
    cut: c.forced,
    byProtocol: s.byProtocol,
    generation: generations.length > 0 ? Math.max(...generations) : undefined,
    workers,
    restarts: c.restarts,
    crashLoops: s.crashLoop.length,
  };
}
