/**
 * Scenario 2: HTTP/2 (h2c) load with h2load and K upgrades — failed streams.
 * h2load does not reconnect a client whose connection ended (see lib/h2load.ts),
 * so each upgrade gets its own h2load run, the upgrade a third into it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { runH2load } from '../lib/h2load.js';
import { monoMs } from '../lib/processes.js';
import { loadFor, withSystem, type Settings, type SystemResult, type UpgradeRecord } from '../lib/scenario.js';
import type { SystemDefinition } from '../lib/system.js';

/** One h2load run around one upgrade. */
export interface Http2Run {
  upgrade: UpgradeRecord;
  total: number;
  succeeded: number;
  failed: number;
  errored: number;
  non2xx: number;
  requestsPerSec: number;
  /** Streams started after the new generation was serving that completed: did the load go on? */
  completedAfterUpgrade: number;
}

export type Http2Result = SystemResult<{ runs: Http2Run[]; failedStreams: number; failedPerUpgrade: number; streams: number }>;

/** Runs scenario 2 against one system. */
export function http2(def: SystemDefinition, s: Settings): Promise<Http2Result> {
  return withSystem(
    def,
    { h2c: true, websocket: false },
    'http2',
    async (sys, { dir }) => {
      const url = `http://127.0.0.1:${sys.h2cPort}/`;
      const runs: Http2Run[] = [];
      for (let i = 0; i < s.upgrades; i++) {
        const logFile = path.join(dir, `h2load-${i}.log`);
        const load = runH2load(url, { clients: s.h2Clients, streams: s.h2Streams, durationS: s.h2RunS, logFile });
        const t0 = monoMs();
        await loadFor((s.h2RunS * 1000) / 3);
        const u = await sys.upgrade();
        const readyEpoch = Date.now() - (monoMs() - u.readyAt);
        const r = await load;
        const gone = await u.gone(s.settleTimeoutMs);
        runs.push({
          upgrade: {
            startedAt: u.startedAt - t0,
            readyAt: u.readyAt - t0,
            goneAt: gone === null ? null : gone - t0,
            readyMs: u.readyAt - u.startedAt,
            goneMs: gone === null ? null : gone - u.startedAt,
          },
          total: r.total,
          succeeded: r.succeeded,
          failed: r.failed,
          errored: r.errored,
          non2xx: r.status['4xx'] + r.status['5xx'],
          requestsPerSec: r.requestsPerSec,
          completedAfterUpgrade: r.entries.filter((e) => e.status > 0 && e.startMs > readyEpoch).length,
        });
        fs.rmSync(logFile, { force: true });
      }
      const failedStreams = runs.reduce((a, r) => a + r.failed + r.non2xx, 0);
      return { runs, failedStreams, failedPerUpgrade: failedStreams / runs.length, streams: runs.reduce((a, r) => a + r.total, 0) };
    },
    { command: 'h2load', install: 'apt-get install nghttp2-client' },
  );
}
