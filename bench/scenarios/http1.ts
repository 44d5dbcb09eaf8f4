/**
 * Scenario 1: HTTP/1.1 keep-alive load (wrk) with K upgrades. For each
 * connection count: a steady-state run without upgrades, then a run during
 * which the system is upgraded K times. Reported: wrk's requests and error
 * counters, failed requests per upgrade, throughput, p50/p99/p99.9 latency of
 * the upgrade run against the steady run, and the per-bucket timeline.
 */
import { monoMs } from '../lib/processes.js';
import { loadFor, upgradeLoop, withSystem, type Settings, type SystemResult, type UpgradeRecord } from '../lib/scenario.js';
import type { SystemDefinition } from '../lib/system.js';
import { runWrk, startTimelineWrk, type WrkTimeline } from '../lib/wrk.js';

/** A wrk run, reduced to what the report uses. */
export interface LoadFigures {
  durationS: number;
  requests: number;
  bytes: number;
  requestsPerSec: number;
  errors: WrkTimeline['errors'];
  /** Requests sent that got no 2xx/3xx answer: read, write and timeout errors, and non-2xx responses. */
  failedRequests: number;
  latencyMs: WrkTimeline['percentilesMs'];
}

/** One connection count of one system. */
export interface Http1Run {
  connections: number;
  steady: LoadFigures;
  underUpgrades: LoadFigures & {
    failedPerUpgrade: number;
    /** Requests the timeline placed in time as lost (a cross-check of wrk's read/write/timeout errors). */
    lostSeen: number;
  };
  upgrades: UpgradeRecord[];
  /** Per bucket, ms since the load started: responses, non-2xx, lost requests. */
  timeline: { t: number; ok: number; non2xx: number; lost: number }[];
  bucketMs: number;
}

export type Http1Result = SystemResult<{ runs: Http1Run[] }>;

function figures(w: WrkTimeline): LoadFigures {
  return {
    durationS: w.durationS,
    requests: w.requests,
    bytes: w.bytes,
    requestsPerSec: w.requestsPerSec,
    errors: w.errors,
    failedRequests: w.errors.read + w.errors.write + w.errors.timeout + w.errors.non2xx,
    latencyMs: w.percentilesMs,
  };
}

/** Runs scenario 1 against one system. */
export function http1(def: SystemDefinition, s: Settings): Promise<Http1Result> {
  return withSystem(
    def,
    { h2c: false, websocket: false },
    'http1',
    async (sys) => {
      const url = `http://127.0.0.1:${sys.httpPort}/`;
      const runs: Http1Run[] = [];
      for (const connections of s.connections) {
        const shape = { threads: s.wrkThreads, connections };
        await runWrk(url, { ...shape, durationS: 1 }); // warm-up, not counted
        const steady = await startTimelineWrk(url, { ...shape, durationS: s.steadyS }).timeline;
        const wrk = startTimelineWrk(url, { ...shape, durationS: 3600 });
        const t0 = monoMs();
        const upgrades = await upgradeLoop(sys, s, t0);
        await loadFor(s.tailMs);
        if (wrk.ended) throw new Error('wrk ended before the upgrades did');
        await wrk.stop();
        const w = await wrk.timeline;
        const f = figures(w);
        runs.push({
          connections,
          steady: figures(steady),
          underUpgrades: { ...f, failedPerUpgrade: f.failedRequests / upgrades.length, lostSeen: w.lostSeen },
          upgrades,
          // Whole buckets only: the ones cut by wrk's start (before t0) and by its stop would look like dips.
          timeline: w.buckets
            .slice(0, -1)
            .map((b) => ({ t: b.at - t0, ok: b.ok, non2xx: b.non2xx, lost: b.lost }))
            .filter((b) => b.t >= 0),
          bucketMs: w.bucketMs,
        });
      }
      return { runs };
    },
    { command: 'wrk', install: 'apt-get install wrk' },
  );
}
