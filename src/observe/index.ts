/**
 * `baton/metrics`: Prometheus metrics of a generation (prom-client) and the
 * report of an upgrade replacing it (recordUpgrades), kept
 * out of the main entry so an app that does not use them never loads
 * prom-client. See docs/metrics.md.
 *
 * @module
 */
export { generationMetrics, type GenerationMetrics } from './generation-metrics.js';
export { metricsHandler, metricsServer } from './metrics-http.js';
export { MetricSet, type MetricsSnapshot } from './metric-set.js';
export { MetricCatalog, PHASE_BUCKETS, type MetricDefinition, type MetricName } from './metric-catalog.js';
export { recordUpgrades, type RecordUpgradesOptions } from './generation-report.js';
export type { UpgradeReportData, ReportSample } from './upgrade-report.js';
