/**
 * The master's metrics socket among the fds an old master passes to a new
 * one. Apart from master-metrics.ts so that a master without `metrics` (and
 * every CLI command) loads no metrics library.
 */
import type { InheritedListener } from '../listeners/listener-set.js';

/** The name of the metrics socket among the fds an old master passes to a new one. */
export const METRICS_FD_NAME = 'baton-metrics';

/** Takes the metrics socket out of the fds inherited from an old master (the rest are the app's listeners). */
export function takeMetricsFd(inherited: InheritedListener[]): number | undefined {
  const i = inherited.findIndex((l) => l.name === METRICS_FD_NAME);
  if (i < 0) return undefined;
  return inherited.splice(i, 1)[0]!.fd;
}
