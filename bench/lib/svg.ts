/** The SVG chart writer lives with the upgrade report (src/observe/svg-chart.ts); the benchmark report uses the same. */
export { lineChart, type ChartOptions, type Series } from '../../src/observe/svg-chart.js';
