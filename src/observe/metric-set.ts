/**
 * baton's metrics as a prom-client registry: the families of
 * {@link MetricCatalog}, plus the process metrics prom-client collects (CPU,
 * memory, event loop lag, handles, GC).
 *
 * Values come from two places. Most are read from a {@link MetricsSnapshot}
 * at scrape time (counters the master persists across masters, connections,
 * workers): {@link MetricSet.render} asks the source for one and renders it.
 * Phase durations and migration batches are events, counted as they come
 * ({@link MetricSet.observePhase}, {@link MetricSet.observeBatch}). Nothing
 * is done per request.
 */
import client from 'prom-client';
import type { BatchEvent } from '../core/channels.js';
import { MetricCatalog, PHASE_BUCKETS, type MetricName } from './metric-catalog.js';

/** An upgrade outcome count. */
export interface OutcomeCount {
  kind: string;
  result: string;
  count: number;
}

/** The last upgrade of one kind. */
export interface LastUpgrade {
  kind: string;
  successful: boolean;
  /** Epoch ms it ended. */
  at: number;
  /** Epoch ms the last successful one ended, if any. */
  lastSuccessAt: number | undefined;
}

/** What a scrape reads from the master or the generation. */
export interface MetricsSnapshot {
  upgrades: OutcomeCount[];
  last: LastUpgrade[];
  /** The current phase, by role (`master`, `generation`). */
  phases: { role: string; phase: string; all: readonly string[] }[];
  connections: { generation: number | undefined; phase: string | undefined; count: number }[];
  migrated: number;
  drained: number;
  cut: number;
  generation: number | undefined;
  workers?: Record<string, number>;
  restarts?: number;
  crashLoops?: number;
}

type AnyMetric = client.Counter | client.Gauge | client.Histogram;

/** The registry of one process (a master or a generation), rendered on each scrape. */
export class MetricSet {
  readonly registry = new client.Registry();
  readonly #metrics = new Map<MetricName, AnyMetric>();
  readonly #snapshot: () => Promise<MetricsSnapshot> | MetricsSnapshot;

  /**
   * `from` selects the families of the catalog; `snapshot` is called once per
   * scrape. `labels` are added to every series (e.g. the app's name).
   */
  constructor(from: 'master' | 'library', snapshot: () => Promise<MetricsSnapshot> | MetricsSnapshot, labels: Record<string, string> = {}) {
    this.#snapshot = snapshot;
    this.registry.setDefaultLabels(labels);
    for (const def of MetricCatalog) {
      if (def.from !== 'both' && def.from !== from) continue;
      const config = { name: def.name, help: def.help, labelNames: [...def.labels], registers: [this.registry] };
      const metric =
        def.type === 'counter'
          ? new client.Counter(config)
          : def.type === 'gauge'
            ? new client.Gauge(config)
            : new client.Histogram({ ...config, buckets: [...PHASE_BUCKETS] });
      this.#metrics.set(def.name, metric);
    }
    client.collectDefaultMetrics({ register: this.registry });
  }

  /** The Content-Type of {@link MetricSet.render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** A phase that lasted `seconds` ended (`role`: master, worker or generation). */
  observePhase(role: string, phase: string, seconds: number): void {
    (this.#metrics.get('baton_phase_duration_seconds') as client.Histogram).observe({ role, phase }, seconds);
  }

  /** A migration batch was acknowledged. */
  observeBatch(e: Pick<BatchEvent, 'adopted' | 'refused'>): void {
    const c = this.#metrics.get('baton_migration_connections_total') as client.Counter;
    for (const [kind, n] of Object.entries(e.adopted)) c.inc({ kind, result: 'adopted' }, n);
    for (const [kind, n] of Object.entries(e.refused)) c.inc({ kind, result: 'refused' }, n);
  }

  /** Reads a snapshot and renders every metric in Prometheus' text format. */
  async render(): Promise<string> {
    this.#apply(await this.#snapshot());
    return this.registry.metrics();
  }

  #apply(s: MetricsSnapshot): void {
    const counter = (name: MetricName) => this.#metrics.get(name) as client.Counter;
    const gauge = (name: MetricName) => this.#metrics.get(name) as client.Gauge | undefined;
    // Counters mirror totals kept elsewhere (persisted across masters): set them by reset + inc.
    const mirror = (name: MetricName, value: number, labels: Record<string, string> = {}) => {
      const c = counter(name);
      if (c) c.inc(labels, value);
    };
    for (const name of [
      'baton_upgrades_total',
      'baton_connections_migrated_total',
      'baton_connections_drained_total',
      'baton_connections_cut_total',
      'baton_requests_failed_total',
      'baton_worker_restarts_total',
    ] as const)
      counter(name)?.reset();
    for (const u of s.upgrades) mirror('baton_upgrades_total', u.count, { kind: u.kind, result: u.result });
    mirror('baton_connections_migrated_total', s.migrated);
    mirror('baton_connections_drained_total', s.drained);
    mirror('baton_connections_cut_total', s.cut);
    mirror('baton_requests_failed_total', s.cut);
    if (s.restarts !== undefined) mirror('baton_worker_restarts_total', s.restarts);
    for (const name of [
      'baton_upgrade_last_successful',
      'baton_upgrade_last_timestamp_seconds',
      'baton_upgrade_last_success_timestamp_seconds',
      'baton_phase',
      'baton_connections',
      'baton_workers',
    ] as const)
      gauge(name)?.reset();
    for (const l of s.last) {
      gauge('baton_upgrade_last_successful')!.set({ kind: l.kind }, l.successful ? 1 : 0);
      gauge('baton_upgrade_last_timestamp_seconds')!.set({ kind: l.kind }, l.at / 1000);
      if (l.lastSuccessAt !== undefined)
        gauge('baton_upgrade_last_success_timestamp_seconds')!.set({ kind: l.kind }, l.lastSuccessAt / 1000);
    }
    for (const p of s.phases) for (const phase of p.all) gauge('baton_phase')!.set({ role: p.role, phase }, phase === p.phase ? 1 : 0);
    const byGeneration = new Map<string, { generation: string; phase: string; count: number }>();
    for (const c of s.connections) {
      const key = `${c.generation ?? ''}/${c.phase ?? ''}`;
      const entry = byGeneration.get(key) ?? { generation: String(c.generation ?? 'unknown'), phase: c.phase ?? 'unknown', count: 0 };
      entry.count += c.count;
      byGeneration.set(key, entry);
    }
    for (const c of byGeneration.values()) gauge('baton_connections')!.set({ generation: c.generation, phase: c.phase }, c.count);
    if (s.generation !== undefined) gauge('baton_generation')!.set(s.generation);
    if (s.workers) for (const [state, n] of Object.entries(s.workers)) gauge('baton_workers')!.set({ state }, n);
    if (s.crashLoops !== undefined) gauge('baton_worker_crash_loops')!.set(s.crashLoops);
  }
}
