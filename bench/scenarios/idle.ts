/**
 * Scenario 4: idle keep-alive connections used once per upgrade. N
 * connections are opened (one request each) and left idle; at each upgrade
 * every connection sends one request, the uses spread evenly over the window
 * that starts with the upgrade action (some land during the handover, some
 * after). Counted: failed requests and fresh connects (the connection had
 * been closed by the server and the client opened a new one).
 */
import { IdleClients, type IdleRound } from '../lib/idle-clients.js';
import { monoMs } from '../lib/processes.js';
import { upgradeLoop, withSystem, type Settings, type SystemResult, type UpgradeRecord } from '../lib/scenario.js';
import type { SystemDefinition } from '../lib/system.js';

export type IdleResult = SystemResult<{
  connections: number;
  spreadMs: number;
  upgrades: (UpgradeRecord & IdleRound)[];
  failed: number;
  freshConnects: number;
  uses: number;
}>;

/** keepAliveTimeout of the Node servers in this scenario: long enough that no idle connection times out during the run. */
const KEEP_ALIVE_MS = 120_000;

/** Runs scenario 4 against one system. */
export function idle(def: SystemDefinition, s: Settings): Promise<IdleResult> {
  return withSystem(def, { h2c: false, websocket: false, keepAliveTimeoutMs: KEEP_ALIVE_MS }, 'idle', async (sys) => {
    const clients = new IdleClients(`http://127.0.0.1:${sys.httpPort}`, s.idleConnections);
    try {
      const first = await clients.use(0);
      if (first.ok !== s.idleConnections) throw new Error(`opening the idle connections: ${JSON.stringify(first)}`);
      const t0 = monoMs();
      let round: Promise<IdleRound> | undefined;
      const upgrades: (UpgradeRecord & IdleRound)[] = [];
      await upgradeLoop(sys, { ...s, warmupMs: 0 }, t0, {
        before: () => {
          round = clients.use(s.idleSpreadMs);
        },
        after: async (_i, u) => {
          upgrades.push({ ...u, ...(await round!) });
        },
      });
      const sum = (f: (r: IdleRound) => number) => upgrades.reduce((a, u) => a + f(u), 0);
      return {
        connections: s.idleConnections,
        spreadMs: s.idleSpreadMs,
        upgrades,
        failed: sum((r) => r.failed + r.non2xx),
        freshConnects: sum((r) => r.freshConnects),
        uses: sum((r) => r.ok + r.failed + r.non2xx),
      };
    } finally {
      await clients.close();
    }
  });
}
