/** Human-readable `baton status`. */
import type { MasterStatus } from '../supervisor/master.js';

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;

/** One block per master: phase and role, listeners, then one line per worker. */
export function formatStatus(name: string, masters: readonly MasterStatus[]): string {
  if (masters.length === 0) return `${name}: no master running\n`;
  const lines: string[] = [];
  for (const m of masters) {
    lines.push(
      `${name}: master pid ${m.pid} (${m.role}) ${m.phase}, up ${seconds(m.uptimeMs)}` +
        (m.childPid ? `, new master pid ${m.childPid}` : ''),
    );
    for (const l of m.listeners)
      lines.push(
        `  listener ${l.name}: ${l.type ? `${l.type} ` : ''}${l.port === undefined ? l.address : `${l.address}:${l.port}`} (${l.origin})`,
      );
    for (const w of m.workers) {
      lines.push(
        `  worker ${w.slot} pid ${w.pid}: ${w.state}${w.generation ? `, generation ${w.generation}` : ''}, ` +
          `${w.connections ?? '?'} connections, up ${seconds(w.uptimeMs)}`,
      );
      for (const d of w.degraded ?? []) lines.push(`    degraded: ${d.degrades} (missing internal ${d.internal})`);
    }
    if (m.workers.length === 0) lines.push('  no workers');
    const c = m.counters;
    lines.push(
      `  reloads ${c.reloads}, upgrades ${c.upgrades}, worker restarts ${c.restarts}; connections migrated ${c.migrated}, drained ${c.drained}, cut ${c.forced}`,
    );
    if (m.crashLoop.length) lines.push(`  CRASH LOOP in worker slot(s) ${m.crashLoop.join(', ')}`);
    if (m.lastError) lines.push(`  last error: ${m.lastError}`);
  }
  return `${lines.join('\n')}\n`;
}
