/**
 * Fault cases known to fail until a fix lands, each with the item of issue 11
 * it belongs to and the branch fixing it. The suite reports a case listed
 * here as "known open" instead of failing; a listed case that passes is
 * reported as "now passes — remove from known-open.ts". Empty this list as
 * the fixes are merged.
 *
 * A pattern is a case id (`<path> <step> <action>`, see fault-case.ts) where
 * `*` matches any run of characters.
 */
export const KnownOpen: { pattern: string; item: string }[] = [
  { pattern: 'winch master.absorb-received *', item: '#11.1 new master killed after WINCH (faults-supervisor)' },
  { pattern: 'disk-full *', item: '#11.2 full disk under the run dir (faults-lib, faults-supervisor)' },
  { pattern: 'fds-exhausted upgrade-socket*', item: '#11.3 EMFILE on the upgrade socket (faults-lib)' },
  { pattern: '* successor.ready-sent stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* successor.draining-received stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* successor.connections-* stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* successor.done-received stop-forever', item: '#11.4 successor hung after Ready (faults-lib)' },
  { pattern: '* predecessor.hello-received kill', item: '#11.5 predecessor killed between Hello and Listeners (faults-lib)' },
  { pattern: '* predecessor.hello-received stop-kill', item: '#11.5 predecessor killed between Hello and Listeners (faults-lib)' },
  { pattern: '* predecessor.ready-received stop-forever', item: '#11.6 predecessor never sending Draining (faults-lib)' },
];

/** The known-open entry matching case `id`, if any. */
export function knownOpen(id: string): { pattern: string; item: string } | undefined {
  return KnownOpen.find((k) => new RegExp(`^${k.pattern.split('*').map(escape).join('.*')}$`).test(id));
}

const escape = (s: string) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
