/**
 * The fault matrix: every upgrade path × every failpoint on its steps ×
 * every action (FAULTS=full), and the slice CI runs (every failpoint at least
 * once with `kill`, `stop` where a hung process must be detected or freed,
 * one baseline without a fault per path).
 */
import { FailPoints, type FailPoint } from '../../src/core/failpoint.js';
import { Actions, type CaseSpec } from './fault-case.js';
import type { PathName } from './targets.js';

const successor = FailPoints.filter((p) => p.startsWith('successor.'));
const predecessor = FailPoints.filter((p) => p.startsWith('predecessor.'));
const handover = [...successor, ...predecessor];

/** The failpoints each path reaches. */
export const StepsOf: Record<PathName, FailPoint[]> = {
  takeover: handover,
  exec: handover,
  run: handover,
  // HUP: the master, then each new worker takes its old worker over.
  reload: ['master.reload-started', ...handover],
  // USR2, then QUIT to the old master: the new master's workers start beside the old ones, no handover.
  binary: ['master.new-master-spawned', 'master.workers-serving', 'master.superseded'],
  // `baton upgrade`: USR2, WINCH (new workers absorb the old ones: the successor side without listeners, state or Ready), QUIT.
  winch: [
    'master.new-master-spawned',
    'master.workers-serving',
    'master.superseded',
    'master.winch',
    'master.absorbing',
    'successor.connected',
    'successor.hello-sent',
    'successor.draining-received',
    'successor.connections-received',
    'successor.connections-acked',
    'successor.done-received',
    ...predecessor,
  ],
};

/**
 * Faults that end the service by design, left out: the only master killed
 * (its workers exit with it; a process manager restarts `baton start`), and,
 * without a supervisor, the successor killed or hung for good once it got
 * Done — the upgrade is over and it is the only server (a crash like any
 * other: `baton run` exits with it, a process manager restarts it). A frozen
 * only master is in the matrix — its workers serve on.
 */
const byDesign = (c: CaseSpec) =>
  (c.step === 'master.reload-started' && (c.action === 'kill' || c.action === 'stop-kill')) ||
  (c.step === 'successor.done-received' && ['takeover', 'exec', 'run'].includes(c.path) && c.action !== 'stop-resume');

/** Every case: a baseline per path, then path × step × action. */
export function fullMatrix(): CaseSpec[] {
  const out: CaseSpec[] = [];
  for (const [path, steps] of Object.entries(StepsOf) as [PathName, FailPoint[]][]) {
    out.push({ path, step: undefined, action: 'kill' });
    for (const step of steps) for (const action of Actions) out.push({ path, step, action });
  }
  return out.filter((c) => !byDesign(c));
}

/**
 * The CI slice: each failpoint killed on one path (rotating, so every path
 * is faulted), freezes where they matter — a successor hung before Ready
 * (hello/ready timeouts) and after Ready (liveness), predecessors frozen then
 * killed, masters frozen then resumed — and a baseline per path.
 */
export function ciSlice(): CaseSpec[] {
  const c = (path: PathName, step: FailPoint | undefined, action: CaseSpec['action'] = 'kill'): CaseSpec => ({ path, step, action });
  return [
    // Baselines: each path is lossless without a fault.
    ...(['takeover', 'exec', 'run', 'reload', 'binary', 'winch'] as const).map((p) => c(p, undefined)),
    // Every successor step killed.
    c('takeover', 'successor.connected'),
    c('exec', 'successor.hello-sent'),
    c('run', 'successor.listeners-received'),
    c('reload', 'successor.state-received'),
    c('takeover', 'successor.ready-sent'),
    c('exec', 'successor.draining-received'),
    c('takeover', 'successor.connections-received'),
    c('reload', 'successor.connections-acked'),
    c('winch', 'successor.done-received'),
    // Killed after acknowledging the last batch: the drain is over, the predecessor must still roll back.
    c('exec', 'successor.connections-acked'),
    c('run', 'successor.connections-acked'),
    // Every predecessor step killed.
    c('takeover', 'predecessor.hello-received'),
    c('exec', 'predecessor.listeners-sent'),
    c('takeover', 'predecessor.state-sent'),
    c('run', 'predecessor.ready-received'),
    c('reload', 'predecessor.draining-sent'),
    c('exec', 'predecessor.connections-sent'),
    c('winch', 'predecessor.done-sent'),
    // Every master step killed (the only master frozen during HUP: killing it ends the service by design).
    c('reload', 'master.reload-started', 'stop-resume'),
    c('binary', 'master.new-master-spawned'),
    c('binary', 'master.workers-serving'),
    c('winch', 'master.superseded'),
    c('winch', 'master.winch'),
    c('winch', 'master.absorbing'),
    // Hung successors: before Ready (hello / ready timeouts), after Ready (liveness).
    c('takeover', 'successor.hello-sent', 'stop-forever'),
    c('exec', 'successor.state-received', 'stop-forever'),
    c('takeover', 'successor.connections-received', 'stop-forever'),
    c('run', 'successor.draining-received', 'stop-forever'),
    c('reload', 'successor.connections-received', 'stop-forever'),
    // Frozen predecessors, then killed; one that never sends Draining.
    c('takeover', 'predecessor.listeners-sent', 'stop-kill'),
    c('exec', 'predecessor.connections-sent', 'stop-kill'),
    c('takeover', 'predecessor.ready-received', 'stop-forever'),
    // Frozen masters, resumed.
    c('binary', 'master.superseded', 'stop-resume'),
    c('winch', 'master.winch', 'stop-resume'),
  ];
}
