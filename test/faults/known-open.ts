/**
 * Fault cases known to fail until a fix lands, each with the item of issue 11
 * it belongs to and the branch fixing it. The suite reports a case listed
 * here as "known open" instead of failing; a listed case that passes is
 * reported as "now passes — remove from known-open.ts". Empty this list as
 * the fixes are merged.
 *
 * A pattern is a case id (`<path> <step> <action>`, see fault-case.ts) where
 * `*` matches any run of characters. An entry with `problem` (a regular
 * expression) covers only the problems it matches: a case is known open when
 * every one of its problems is covered.
 */
export interface KnownOpenCase {
  pattern: string;
  problem?: string;
  item: string;
}

/** Leftovers of a SIGKILLed process: a successor's published-socket temporary; a master's slot dir, control socket, .oldbin. */
const staleKinds = String.raw`([\w-]+/)*[\w-]+\.sock\.\d+\.tmp|app-m\d+|app-master-\d+\.sock|app\.pid\.oldbin \(names dead pid \d+\)`;

export const KnownOpen: KnownOpenCase[] = [
  { pattern: 'winch master.absorbing *', item: '#11.1 new master killed after WINCH (faults-supervisor)' },
  // faults-lib merged (liveness): serves again; probes queued while nobody accepts during the liveness window remain.
  { pattern: '* successor.ready-sent stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* successor.draining-received stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* successor.connections-* stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* successor.done-received stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  // faults-lib merged: the successor binds by itself and serves; the connections refused in the gap remain.
  { pattern: '* predecessor.hello-received kill', item: '#11.5 predecessor killed between Hello and Listeners (faults-lib)' },
  { pattern: '* predecessor.hello-received stop-kill', item: '#11.5 predecessor killed between Hello and Listeners (faults-lib)' },
  {
    pattern: 'takeover predecessor.listeners-sent stop-kill',
    item: 'NEW, next to #11.5: predecessor frozen after sending Listeners, then killed — nothing serves (the kill variant passes since faults-lib)',
  },
  {
    pattern: 'binary master.new-master-spawned kill',
    problem: '^next upgrade: ',
    item: "NEW: the old master killed right after USR2 — the new master serves but misses the IPC disconnect (its 'disconnect' listener is installed after awaits in master.ts), so it refuses the next USR2 as if the old master still ran",
  },
  // Hygiene (issue 11, "Stale files left behind"): what a SIGKILLed process leaves in the run/socket dir.
  {
    pattern: '*',
    problem: String.raw`^stale files: (${staleKinds})(, (${staleKinds}))*$`,
    item: "#11 hygiene: stale files of a killed process (a successor's <name>.sock.<pid>.tmp; a master's slot dir, control socket, pid.oldbin)",
  },
];

const matches = (k: KnownOpenCase, id: string) => new RegExp(`^${k.pattern.split('*').map(escape).join('.*')}$`).test(id);

/**
 * The known-open entries that cover case `id`: for a failed case, its
 * problems (all must be covered, else undefined); for a passing case, the
 * entries without `problem` that name it (it should leave the list).
 */
export function knownOpen(id: string, problems: string[]): KnownOpenCase[] | undefined {
  const entries = KnownOpen.filter((k) => matches(k, id));
  if (problems.length === 0) {
    const named = entries.filter((k) => k.problem === undefined);
    return named.length > 0 ? named : undefined;
  }
  const used = new Set<KnownOpenCase>();
  for (const p of problems) {
    const k = entries.find((e) => e.problem === undefined || new RegExp(e.problem).test(p));
    if (!k) return undefined;
    used.add(k);
  }
  return [...used];
}

const escape = (s: string) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
