/**
 * Scenario 3: long connections. N WebSocket connections, each sending a
 * numbered message every interval (echoed by the app), across K upgrades.
 * Per upgrade: the connections open before it that are still open once the
 * previous generation is gone (or the settle timeout passed) — then the
 * closed ones are reopened for the next upgrade. Overall: messages lost.
 */
import { WsClients, type WsTotals } from '../lib/ws-clients.js';
import { monoMs } from '../lib/processes.js';
import { loadFor, upgradeLoop, withSystem, type Settings, type SystemResult, type UpgradeRecord } from '../lib/scenario.js';
import type { SystemDefinition } from '../lib/system.js';

export interface WsUpgrade extends UpgradeRecord {
  openBefore: number;
  survived: number;
  reopened: number;
}

export type WebSocketResult = SystemResult<{
  connections: number;
  upgrades: WsUpgrade[];
  /** Survivors ÷ connections open before, over all upgrades. */
  survival: number;
  totals: WsTotals;
}>;

/** Runs scenario 3 against one system. */
export function websocket(def: SystemDefinition, s: Settings): Promise<WebSocketResult> {
  return withSystem(def, { h2c: false, websocket: true }, 'websocket', async (sys) => {
    const clients = new WsClients(`ws://127.0.0.1:${sys.httpPort}/ws`, s.wsConnections, s.wsMessageIntervalMs);
    try {
      await clients.open();
      const t0 = monoMs();
      let before: number[] = [];
      const upgrades: WsUpgrade[] = [];
      await upgradeLoop(sys, s, t0, {
        before: () => {
          before = clients.openIds();
        },
        after: async (_i, u) => {
          const open = new Set(clients.openIds());
          const survived = before.filter((id) => open.has(id)).length;
          upgrades.push({ ...u, openBefore: before.length, survived, reopened: await clients.reopen() });
        },
      });
      await loadFor(s.tailMs);
      const totals = await clients.close();
      const openBefore = upgrades.reduce((a, u) => a + u.openBefore, 0);
      return {
        connections: s.wsConnections,
        upgrades,
        survival: upgrades.reduce((a, u) => a + u.survived, 0) / openBefore,
        totals,
      };
    } finally {
      await clients.close(0);
    }
  });
}
