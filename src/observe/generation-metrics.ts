/**
 * The library's metrics: the families of the catalog for one generation, to
 * mount in the app's own server or to serve on a listener of their own.
 *
 * ```ts
 * const generation = await start();
 * const metrics = generationMetrics(generation);
 * http.createServer((req, res) => (req.url === '/metrics' ? metrics.handler(req, res) : app(req, res)));
 * // or: await metrics.listen(9464, '127.0.0.1');
 * ```
 *
 * A generation counts what it saw: its own drain, and — as a successor —
 * the takeover that made it and the drain its predecessor reported (Done).
 * A new generation's counters start from those (a counter reset for
 * Prometheus, which `rate()` and `increase()` handle).
 */
import type http from 'node:http';
import type { Generation } from '../generation.js';
import { ChannelNames, subscribe, type BatchEvent, type PhaseEvent } from '../core/channels.js';
import { MetricSet, type LastUpgrade, type MetricsSnapshot, type OutcomeCount } from './metric-set.js';
import { metricsHandler, metricsServer } from './metrics-http.js';

const GENERATION_PHASES = ['starting', 'taking-over', 'serving', 'handing-over', 'draining', 'exited', 'failed'] as const;

/** The metrics of one generation. Create with {@link generationMetrics}; {@link GenerationMetrics.close} ends them. */
export interface GenerationMetrics {
  /** The registry (prom-client), e.g. to merge with the app's own metrics. */
  readonly set: MetricSet;
  /** A `(req, res)` handler answering `GET /metrics` (see metricsHandler). */
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** Serves the metrics on a listener of their own; resolves with the listening server (closed by {@link GenerationMetrics.close}). */
  listen(port: number, host?: string): Promise<http.Server>;
  /** Unsubscribes from the generation's events and closes the server of {@link GenerationMetrics.listen}, if any. */
  close(): void;
}

/**
 * Metrics of `generation`: upgrades (kind `takeover` or `exec`, counted by
 * the generation they made and by the predecessor whose successor failed),
 * phases and their durations, open connections, connections migrated,
 * drained and cut, migration batches by kind, and process metrics.
 * `labels` are added to every series.
 */
export function generationMetrics(generation: Generation, labels: Record<string, string> = {}): GenerationMetrics {
  const outcomes = new Map<string, OutcomeCount>();
  const last = new Map<string, LastUpgrade>();
  const totals = { migrated: 0, drained: 0, cut: 0 };
  const count = (kind: string, result: 'done' | 'failed') => {
    const key = `${kind}/${result}`;
    const o = outcomes.get(key) ?? { kind, result, count: 0 };
    o.count++;
    outcomes.set(key, o);
    const at = Date.now();
    const previous = last.get(kind);
    last.set(kind, { kind, successful: result === 'done', at, lastSuccessAt: result === 'done' ? at : previous?.lastSuccessAt });
  };
  const addDrain = (r: { migrated: number; drained: number; forced: number }) => {
    totals.migrated += r.migrated;
    totals.drained += r.drained;
    totals.cut += r.forced;
  };
  const snapshot = (): MetricsSnapshot => ({
    upgrades: [...outcomes.values()],
    last: [...last.values()],
    phases: [{ role: 'generation', phase: generation.phase, all: GENERATION_PHASES }],
    connections: [{ generation: generation.number, phase: generation.phase, count: generation.connections }],
    ...totals,
    generation: generation.number,
  });
  const set = new MetricSet('library', snapshot, labels);

  let via: string = generation.origin;
  const onUpgradeStart = (info: { via: string }) => (via = info.via);
  const onUpgradeFailed = () => count(via, 'failed');
  const onPhase = (to: string) => {
    if (to === 'serving' && (generation.origin === 'takeover' || generation.origin === 'exec') && generation.phaseHistory.length === 3)
      count(generation.origin, 'done');
    if (to === 'failed') count(generation.origin, 'failed');
  };
  generation.on('upgrade-start', onUpgradeStart);
  generation.on('upgrade-failed', onUpgradeFailed);
  generation.on('phase', onPhase);
  generation.on('drained', addDrain);
  generation.on('predecessor-done', addDrain);
  const offPhase = subscribe<PhaseEvent>(ChannelNames.phase, (e) => {
    if (e.role === 'generation' && e.generation === generation.number) set.observePhase('generation', e.from, e.durationMs / 1000);
  });
  const offBatch = subscribe<BatchEvent>(ChannelNames.batch, (e) => set.observeBatch(e));
  let server: http.Server | undefined;
  return {
    set,
    handler: metricsHandler(set),
    listen(port, host = '127.0.0.1') {
      server = metricsServer(set);
      const s = server;
      return new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => resolve(s));
      });
    },
    close() {
      generation.off('upgrade-start', onUpgradeStart);
      generation.off('upgrade-failed', onUpgradeFailed);
      generation.off('phase', onPhase);
      generation.off('drained', addDrain);
      generation.off('predecessor-done', addDrain);
      offPhase();
      offBatch();
      server?.close();
    },
  };
}
