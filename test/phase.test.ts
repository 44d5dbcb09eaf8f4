/**
 * The phase state machine (src/core/phase.ts): exactly the transitions of the
 * documented diagram are allowed, every other one throws
 * ERR_BATON_INVALID_PHASE without changing anything, every transition is
 * emitted as (to, from), and the history lists every phase entered, in order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PhaseMachine, type Phase } from '../src/core/phase.js';

const PHASES: readonly Phase[] = ['starting', 'taking-over', 'serving', 'handing-over', 'draining', 'exited', 'failed'];

/** The spec, written out independently of the implementation's table. */
const ALLOWED: Readonly<Record<Phase, readonly Phase[]>> = {
  // Fresh start → serving; a predecessor found → taking-over; stop() before ready → draining.
  starting: ['taking-over', 'serving', 'failed', 'draining'],
  // Ready acknowledged → serving; aborted by the predecessor → failed.
  'taking-over': ['serving', 'failed'],
  // A successor said hello → handing-over; stop() → draining.
  serving: ['handing-over', 'draining'],
  // The handover failed → serving again; the successor is ready → draining.
  'handing-over': ['serving', 'draining'],
  // Drain done → exited; the successor died meanwhile → serving again (rollback).
  draining: ['exited', 'serving'],
  exited: [],
  failed: [],
};

/** A way to reach each phase from 'starting'. */
const PATH: Readonly<Record<Phase, readonly Phase[]>> = {
  starting: [],
  'taking-over': ['taking-over'],
  serving: ['serving'],
  'handing-over': ['serving', 'handing-over'],
  draining: ['serving', 'draining'],
  exited: ['serving', 'draining', 'exited'],
  failed: ['taking-over', 'failed'],
};

function machineAt(phase: Phase): PhaseMachine {
  const m = new PhaseMachine();
  for (const p of PATH[phase]) m.transition(p);
  assert.equal(m.phase, phase);
  return m;
}

describe('PhaseMachine', () => {
  it("starts in 'starting' with a one-entry history", () => {
    const m = new PhaseMachine();
    assert.equal(m.phase, 'starting');
    assert.deepEqual(m.history, ['starting']);
  });

  for (const from of PHASES) {
    it(`from '${from}' allows exactly ${ALLOWED[from].length ? ALLOWED[from].join(', ') : 'nothing (terminal)'}`, () => {
      for (const to of PHASES) {
        const m = machineAt(from);
        const historyBefore = [...m.history];
        const events: [Phase, Phase][] = [];
        m.on('phase', (t, f) => events.push([t, f]));
        const expected = ALLOWED[from].includes(to);
        assert.equal(m.can(to), expected, `can('${from}' → '${to}')`);
        if (expected) {
          m.transition(to);
          assert.equal(m.phase, to);
          assert.deepEqual(events, [[to, from]]);
          assert.deepEqual(m.history, [...historyBefore, to]);
        } else {
          assert.throws(
            () => m.transition(to),
            (err: Error & { code?: string }) =>
              err.code === 'ERR_BATON_INVALID_PHASE' && err.message.includes(`'${from}'`) && err.message.includes(`'${to}'`),
            `'${from}' → '${to}' must be refused`,
          );
          assert.equal(m.phase, from, 'a refused transition changes nothing');
          assert.deepEqual(m.history, historyBefore);
          assert.deepEqual(events, [], 'a refused transition emits nothing');
        }
      }
    });
  }

  it('records a whole life, including failed handovers, in order', () => {
    const m = new PhaseMachine();
    const seen: string[] = [];
    m.on('phase', (to, from) => seen.push(`${from}>${to}`));
    const life: Phase[] = ['serving', 'handing-over', 'serving', 'handing-over', 'serving', 'handing-over', 'draining', 'exited'];
    for (const p of life) m.transition(p);
    assert.deepEqual(m.history, ['starting', ...life]);
    assert.deepEqual(seen, [
      'starting>serving',
      'serving>handing-over',
      'handing-over>serving',
      'serving>handing-over',
      'handing-over>serving',
      'serving>handing-over',
      'handing-over>draining',
      'draining>exited',
    ]);
  });
});
