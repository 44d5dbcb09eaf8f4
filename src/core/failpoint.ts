import fs from 'node:fs';
import path from 'node:path';
import { publishStep } from './channels.js';

/**
 * Fault injection at named protocol steps, for baton's own fault-injection
 * suite (test/faults/). A fault is armed by a test, not by timing: the test
 * creates a file `<BATON_FAULTS dir>/<point>` whose content is the action, and
 * the first process of the tree that reaches `<point>` claims the file (an
 * atomic rename to `<point>.fired-<pid>`) and performs the action on itself.
 * So a fault fires exactly once, in exactly one process — whichever
 * generation, worker or master gets there first — at exactly that step.
 *
 * Inert unless the environment variable `BATON_FAULTS` names a directory when
 * this module loads: then every {@link failpoint} call is a single boolean test
 * (after the step's publish on `baton:handover:step`, itself one check while
 * nobody subscribes).
 *
 * Actions (the file's content, trimmed):
 * - `kill` — SIGKILL: the process vanishes at this step.
 * - `stop` — SIGSTOP: the process freezes at this step (the test resumes or
 *   kills it).
 */
const dir = process.env.BATON_FAULTS;
const armed = typeof dir === 'string' && dir !== '';

/**
 * The named steps. Each name is `<role>.<step>`: `successor` and
 * `predecessor` are the two sides of a handover (library, `baton run` and
 * supervisor workers alike), `master` the supervisor's master process.
 */
export const FailPoints = [
  // Successor side of a handover (start(), Generation#ready, the receive loop).
  'successor.connected', // connected to the predecessor's upgrade socket or exec channel, nothing sent
  'successor.hello-sent', // Hello sent, the predecessor's Hello not yet read
  'successor.listeners-received', // the Listeners frame (and its fds) read
  'successor.state-received', // the State frame read; start() is about to resolve
  'successor.ready-sent', // Ready sent, Draining not yet read
  'successor.draining-received', // Draining read: the predecessor no longer accepts
  'successor.connections-received', // a Connections batch read, not yet adopted nor acknowledged
  'successor.connections-acked', // a batch adopted and acknowledged
  'successor.done-received', // the predecessor's Done read
  // Predecessor side (handover/predecessor.ts).
  'predecessor.hello-received', // a valid Hello read, nothing answered yet
  'predecessor.listeners-sent', // Hello answered and the listener fds sent, State not yet sent
  'predecessor.state-sent', // State sent, waiting for Ready
  'predecessor.ready-received', // the successor's Ready read, still accepting
  'predecessor.draining-sent', // stopped accepting and sent Draining
  'predecessor.connections-sent', // a Connections batch written, its ack not yet read
  'predecessor.done-sent', // Done sent, about to exit
  // Supervisor master (supervisor/master.ts).
  'master.new-master-spawned', // USR2: the new master spawned, pid file renamed to .oldbin
  'master.workers-serving', // a new master: its workers serve, the old master not yet told
  'master.superseded', // an old master: told that the new one serves
  'master.winch', // an old master: WINCH received, workers about to retire
  'master.absorbing', // a new master: told to take the old master's retiring workers over, its workers not yet told
  'master.reload-started', // HUP: config read, new workers about to start
] as const;

/** One of {@link FailPoints}. */
export type FailPoint = (typeof FailPoints)[number];

/**
 * Marks a step. Does nothing unless a test armed `point` (see the module
 * comment); then performs the armed action on this process. Never throws.
 */
export function failpoint(point: FailPoint): void {
  // Every fault point is a named protocol step: published as `baton:handover:step`.
  publishStep(point);
  if (!armed) return;
  const file = path.join(dir, point);
  let action: string;
  try {
    action = fs.readFileSync(file, 'utf8').trim();
    fs.renameSync(file, `${file}.fired-${process.pid}`);
  } catch {
    return; // not armed, or another process claimed it first
  }
  if (action === 'kill') process.kill(process.pid, 'SIGKILL');
  else if (action === 'stop') process.kill(process.pid, 'SIGSTOP');
}
