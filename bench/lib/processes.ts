/**
 * Processes of the benchmark: fixture paths, the shared clock, and the
 * JSON-line event log (the test suite's, so the bench coordinates on events,
 * never on sleeps, exactly as the tests do).
 */
import { fileURLToPath } from 'node:url';

export { EventLog, killAll, pidsOf, spawnFixture, tempDir, type FixtureEvent } from '../../test/helpers/server-process.js';

/** Absolute path of a compiled bench fixture (dist/bench/fixtures/<name>.js). */
export function benchFixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}.js`, import.meta.url));
}

/**
 * Milliseconds on the machine-wide monotonic clock (CLOCK_MONOTONIC, through
 * process.hrtime): comparable between processes, unlike performance.now().
 */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
