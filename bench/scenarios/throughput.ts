/**
 * Scenario 6: steady-state throughput of the baton-hosted hello server
 * against plain Node with the same handler (bench/lib/throughput.ts, the
 * measurement `npm run bench` makes too). Not per system: baton only.
 */
import fs from 'node:fs';
import { BatonFixtures } from '../lib/baton-fixture.js';
import { EventLog, killAll, pidsOf, tempDir } from '../lib/processes.js';
import type { Settings } from '../lib/scenario.js';
import { measureThroughput, type Throughput } from '../lib/throughput.js';
import { wrkAvailable } from '../lib/wrk.js';

export type ThroughputResult =
  { status: 'ran'; connections: number; result: Throughput } | { status: 'skipped' | 'failed'; reason: string };

/** Runs scenario 6. */
export async function throughput(s: Settings): Promise<ThroughputResult> {
  if (!wrkAvailable()) return { status: 'skipped', reason: 'wrk not installed (apt-get install wrk, or npm run bench:setup)' };
  const log = new EventLog();
  const dir = tempDir('baton-bench-throughput-');
  const connections = s.connections[0] ?? 64;
  try {
    const result = await measureThroughput(new BatonFixtures(log), log, dir, {
      shape: { threads: s.wrkThreads, connections },
      runS: s.throughputRunS,
      warmupS: 1,
      rounds: s.throughputRounds,
      progress: (line) => process.stderr.write(`bench: throughput: ${line}\n`),
    });
    return { status: 'ran', connections, result };
  } catch (err) {
    return { status: 'failed', reason: (err as Error).message.split('\n')[0]! };
  } finally {
    killAll(pidsOf(log));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
