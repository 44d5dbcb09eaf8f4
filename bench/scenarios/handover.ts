/**
 * Scenario 5: handover time and memory, without load. K upgrades; for each,
 * the time from the upgrade action to the new generation serving and to the
 * old one gone, and the summed RSS of every process of the system (both
 * generations during the upgrade), sampled every 10 ms: before, peak, after.
 */
import { monoMs } from '../lib/processes.js';
import { GroupRssSampler } from '../lib/rss.js';
import { upgradeLoop, withSystem, type Settings, type SystemResult, type UpgradeRecord } from '../lib/scenario.js';
import { median } from '../lib/stats.js';
import type { SystemDefinition } from '../lib/system.js';

export interface HandoverUpgrade extends UpgradeRecord {
  rss: { beforeMB: number; peakMB: number; afterMB: number; maxProcesses: number; samples: number };
}

export type HandoverResult = SystemResult<{
  upgrades: HandoverUpgrade[];
  readyMsMedian: number;
  goneMsMedian: number | null;
  rssBeforeMBMedian: number;
  rssPeakMBMedian: number;
}>;

/** Runs scenario 5 against one system. */
export function handover(def: SystemDefinition, s: Settings): Promise<HandoverResult> {
  return withSystem(def, { h2c: false, websocket: false }, 'handover', async (sys) => {
    const rss = new GroupRssSampler(() => sys.pids());
    rss.start();
    try {
      const t0 = monoMs();
      const upgrades: HandoverUpgrade[] = [];
      // Upgrades back to back (once the previous generation is gone): there is no load to schedule against.
      await upgradeLoop(sys, { ...s, warmupMs: 200, intervalMs: 0 }, t0, {
        after: async (_i, u) => {
          // One more interval so the sample after the old generation's exit is in.
          await new Promise((r) => setTimeout(r, 3 * rss.intervalMs));
          const from = t0 + u.startedAt;
          const to = t0 + Math.max(u.goneAt ?? u.readyAt, u.readyAt) + 2 * rss.intervalMs;
          upgrades.push({ ...u, rss: rss.window(from, to) });
        },
      });
      const gone = upgrades.map((u) => u.goneMs).filter((g): g is number => g !== null);
      return {
        upgrades,
        readyMsMedian: median(upgrades.map((u) => u.readyMs)),
        goneMsMedian: gone.length === upgrades.length ? median(gone) : null,
        rssBeforeMBMedian: median(upgrades.map((u) => u.rss.beforeMB)),
        rssPeakMBMedian: median(upgrades.map((u) => u.rss.peakMB)),
      };
    } finally {
      rss.stop();
    }
  });
}
