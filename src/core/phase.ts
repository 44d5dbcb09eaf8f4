import { EventEmitter } from 'node:events';
import { BatonError } from './errors.js';

/**
 * The phases of one server generation. Every transition is emitted as a
 * `'phase'` event on the generation, and tests assert the exact order.
 *
 * ```
 * starting ──► taking-over ──► serving ◄──► handing-over
 *    │              │             │              │
 *    └──► serving   └──► failed   └──► draining ◄┘
 *                                        │  ▲ rollback: the successor died
 *                                        ▼  └──► serving
 *                                      exited
 * ```
 */
export type Phase =
  /** Finding out how this process came to be; listeners may be set up. */
  | 'starting'
  /** A predecessor is handing its listeners and state over; not ready yet. */
  | 'taking-over'
  /** Ready and accepting; the upgrade socket belongs to this generation. */
  | 'serving'
  /** A successor is setting up; this generation still accepts and serves. */
  | 'handing-over'
  /**
   * A successor is ready (or a stop was asked): no longer accepting, finishing
   * connections. Back to `serving` (rollback) if the successor dies meanwhile.
   */
  | 'draining'
  /** Drain finished; everything baton owned is closed. Terminal. */
  | 'exited'
  /** The takeover failed (the predecessor serves on). Terminal. */
  | 'failed';

const allowed: Readonly<Record<Phase, readonly Phase[]>> = {
  starting: ['taking-over', 'serving', 'failed', 'draining'],
  'taking-over': ['serving', 'failed'],
  serving: ['handing-over', 'draining'],
  'handing-over': ['serving', 'draining'],
  draining: ['exited', 'serving'],
  exited: [],
  failed: [],
};

/**
 * An observable state machine over the phases `P`: every transition is checked
 * against `allowed` and emitted as `'phase'`. Generations and supervisor masters
 * each have one.
 */
export class StateMachine<P extends string> extends EventEmitter<{ phase: [to: P, from: P] }> {
  #phase: P;
  readonly #history: P[];
  readonly #allowed: Readonly<Record<P, readonly P[]>>;

  constructor(initial: P, allowedTransitions: Readonly<Record<P, readonly P[]>>) {
    super();
    this.#phase = initial;
    this.#history = [initial];
    this.#allowed = allowedTransitions;
  }

  /** The current phase. */
  get phase(): P {
    return this.#phase;
  }

  /** Every phase entered so far, in order, starting with the initial one. */
  get history(): readonly P[] {
    return this.#history;
  }

  /** True when `to` may follow the current phase. */
  can(to: P): boolean {
    return this.#allowed[this.#phase].includes(to);
  }

  /**
   * Moves to `to` and emits `'phase'`. Throws ERR_BATON_INVALID_PHASE when the
   * transition is not allowed (a bug, never a runtime condition).
   */
  transition(to: P): void {
    const from = this.#phase;
    if (!this.can(to)) {
      throw new BatonError('ERR_BATON_INVALID_PHASE', `cannot move from phase '${from}' to '${to}'`);
    }
    this.#phase = to;
    this.#history.push(to);
    this.emit('phase', to, from);
  }
}

/** The observable state machine of a generation's phases (diagram above). */
export class PhaseMachine extends StateMachine<Phase> {
  constructor() {
    super('starting', allowed);
  }
}
