/**
 * Scenario 2: HTTP/2 (h2c) load with h2load and K upgrades — failed streams.
 * h2load does not reconnect a client whose connection ended (see lib/h2load.ts),
 * so each upgrade gets its own h2load run, the upgrade a third into it. A
 * compliant client (lib/h2-clients.ts: retries REFUSED_STREAM, reconnects after
 * GOAWAY) runs alongside, so the report can tell streams a real client would
 * lose from streams h2load gives up on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { H2Clients, type H2ClientTotals } from '../lib/h2-clients.js';
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
  /** The compliant client's view of the same run (lib/h2-clients.ts). */
  compliant: H2ClientTotals;
}

export type Http2Result = SystemResult<{
  runs: Http2Run[];
  failedStreams: number;
  failedPerUpgrade: number;
  streams: number;
  /** The compliant client over all runs: streams failed after retrying what was refused. */
  compliant: { completed: number; retried: number; failed: number; connects: number; errors: Record<string, number> };
}>;

/** Connections of the compliant client, each with as many streams in flight as h2load's. */
const H2_CLIENT_SESSIONS = 2;

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
        const compliant = new H2Clients(`http://127.0.0.1:${sys.h2cPort}`, H2_CLIENT_SESSIONS, s.h2Streams);
        const load = runH2load(url, { clients: s.h2Clients, streams: s.h2Streams, durationS: s.h2RunS, logFile });
        const t0 = monoMs();
        await loadFor((s.h2RunS * 1000) / 3);
        const u = await sys.upgrade();
        const readyEpoch = Date.now() - (monoMs() - u.readyAt);
        const r = await load;
        const c = await compliant.stop();
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
          compliant: c,
        });
        fs.rmSync(logFile, { force: true });
      }
      const failedStreams = runs.reduce((a, r) => a + r.failed + r.non2xx, 0);
      const compliant = { completed: 0, retried: 0, failed: 0, connects: 0, errors: {} as Record<string, number> };
      for (const { compliant: c } of runs) {
        compliant.completed += c.completed;
        compliant.retried += c.retried;
        compliant.failed += c.failed;
        compliant.connects += c.connects;
        for (const [k, v] of Object.entries(c.errors)) compliant.errors[k] = (compliant.errors[k] ?? 0) + v;
      }
      return {
        runs,
        failedStreams,
        failedPerUpgrade: failedStreams / runs.length,
        streams: runs.reduce((a, r) => a + r.total, 0),
        compliant,
      };
    },
    { command: 'h2load', install: 'apt-get install nghttp2-client' },
  );
}
