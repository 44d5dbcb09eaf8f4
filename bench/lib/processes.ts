/**
 * Processes of the benchmark: fixture paths, the shared clock, and the
 * JSON-line event log (the test suite's, so the bench coordinates on events,
 * never on sleeps, exactly as the tests do).
 */
import { fileURLToPath } from 'node:url';

import { killAll, pidsOf, type EventLog } from '../../test/helpers/server-process.js';

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

/**
 * Runs a benchmark's `main`: a failure sets the exit code and prints its stack
 * with the last lines the fixtures wrote; then, whatever happened, `cleanup`
 * runs and every process seen in `log` is killed.
 */
export async function runBench(main: () => Promise<void>, log: EventLog, cleanup: () => void): Promise<void> {
  try {
    await main();
  } catch (err) {
    process.exitCode = 1;
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.stderr.write(`last output:\n${log.output.slice(-30).join('\n')}\n`);
  } finally {
    cleanup();
    killAll(pidsOf(log));
  }
}
