/**
 * Every metric baton exports, in one list: its name, type, labels and
 * meaning. The master's and the library's registries are built from it
 * (`metric-set.ts`), and docs/metrics.md is checked against it by a test, so
 * the three cannot disagree.
 */

/** One metric family baton exports. */
export interface MetricDefinition {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly labels: readonly string[];
  /** The HELP text (one sentence; docs/metrics.md says more). */
  readonly help: string;
  /** Who exports it: the supervisor's master, the library (a generation), or both. */
  readonly from: 'master' | 'library' | 'both';
}

/** The buckets of the phase-duration histogram, in seconds: 1 ms to 5 min. */
export const PHASE_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The metric families, by name. Renaming one is a breaking change (dashboards and alerts use them). */
export const MetricCatalog = [
  {
    name: 'baton_upgrades_total',
    type: 'counter',
    labels: ['kind', 'result'],
    help: 'Upgrades by kind (reload, binary, takeover, exec) and result (done, failed, refused).',
    from: 'both',
  },
  {
    name: 'baton_upgrade_last_successful',
    type: 'gauge',
    labels: ['kind'],
    help: 'Whether the last upgrade of this kind succeeded (1) or not (0).',
    from: 'both',
  },
  {
    name: 'baton_upgrade_last_timestamp_seconds',
    type: 'gauge',
    labels: ['kind'],
    help: 'When the last upgrade of this kind ended, in seconds since the epoch.',
    from: 'both',
  },
  {
    name: 'baton_upgrade_last_success_timestamp_seconds',
    type: 'gauge',
    labels: ['kind'],
    help: 'When the last successful upgrade of this kind ended, in seconds since the epoch.',
    from: 'both',
  },
  {
    name: 'baton_phase_duration_seconds',
    type: 'histogram',
    labels: ['role', 'phase'],
    help: 'How long a generation (role worker or generation) or the master (role master) stayed in a phase.',
    from: 'both',
  },
  {
    name: 'baton_phase',
    type: 'gauge',
    labels: ['role', 'phase'],
    help: 'The current phase: 1 for the phase the master (or this generation) is in, 0 for the others.',
    from: 'both',
  },
  {
    name: 'baton_connections',
    type: 'gauge',
    labels: ['generation', 'phase'],
    help: 'Open connections, by generation number and the phase of the generation holding them.',
    from: 'both',
  },
  {
    name: 'baton_connections_migrated_total',
    type: 'counter',
    labels: ['protocol'],
    help: 'Connections handed alive to a newer generation by generations that finished draining, by protocol.',
    from: 'both',
  },
  {
    name: 'baton_connections_drained_total',
    type: 'counter',
    labels: ['protocol'],
    help: 'Connections that ended by themselves during a drain, by protocol.',
    from: 'both',
  },
  {
    name: 'baton_connections_cut_total',
    type: 'counter',
    labels: ['protocol'],
    help: 'Connections destroyed at the drain timeout, by protocol.',
    from: 'both',
  },
  {
    name: 'baton_migration_connections_total',
    type: 'counter',
    labels: ['kind', 'result'],
    help: 'Live connections offered to a successor in migration batches, by protocol kind and result (adopted, refused).',
    from: 'both',
  },
  {
    name: 'baton_requests_failed_total',
    type: 'counter',
    labels: [],
    help: 'Requests baton may have failed: at most one per connection cut at the drain timeout.',
    from: 'both',
  },
  {
    name: 'baton_generation',
    type: 'gauge',
    labels: [],
    help: 'The newest generation number serving.',
    from: 'both',
  },
  {
    name: 'baton_workers',
    type: 'gauge',
    labels: ['state'],
    help: "The master's worker processes by state (starting, ready, stopping).",
    from: 'master',
  },
  {
    name: 'baton_worker_restarts_total',
    type: 'counter',
    labels: [],
    help: 'Workers restarted after a crash.',
    from: 'master',
  },
  {
    name: 'baton_worker_crash_loops',
    type: 'gauge',
    labels: [],
    help: 'Worker slots in a crash loop now.',
    from: 'master',
  },
] as const satisfies readonly MetricDefinition[];

/** The name of a metric in {@link MetricCatalog}. */
export type MetricName = (typeof MetricCatalog)[number]['name'];
