/**
 * baton's `node:diagnostics_channel` events (documented in docs/metrics.md,
 * "Diagnostics channels"; the names and payload fields are stable):
 *
 * - `baton:phase` — a generation or a supervisor master moved from one phase
 *   to another ({@link PhaseEvent}).
 * - `baton:handover:step` — a named step of the handover protocol was reached,
 *   on either side, or of the master's upgrade sequence ({@link StepEvent};
 *   the steps are the fault-injection points of `core/failpoint.ts`).
 * - `baton:migration:batch` — a batch of live connections was acknowledged by
 *   the successor ({@link BatchEvent}; published by the predecessor).
 *
 * Zero cost without subscribers: every publish is guarded by
 * `channel.hasSubscribers`, and the payload is built only then. With
 * `NODE_DEBUG=baton` every event is also written as one text line to stderr
 * (util.debuglog), subscribers or not.
 */
import diagnostics from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

/** The channel names. */
export const ChannelNames = {
  phase: 'baton:phase',
  step: 'baton:handover:step',
  batch: 'baton:migration:batch',
} as const;

/** Payload of `baton:phase`. */
export interface PhaseEvent {
  /** `generation` (the library, `baton run`, a supervisor worker) or `master`. */
  role: 'generation' | 'master';
  pid: number;
  /** The generation's number (a master: undefined). */
  generation: number | undefined;
  from: string;
  to: string;
  /** How long the phase `from` lasted, in ms. */
  durationMs: number;
  /** `Date.now()` at the transition. */
  at: number;
}

/** Payload of `baton:handover:step`. */
export interface StepEvent {
  /** `successor`, `predecessor` or `master`: the first part of `step`. */
  role: string;
  /** `<role>.<step>`, e.g. `predecessor.ready-received`. */
  step: string;
  pid: number;
  at: number;
}

/** Payload of `baton:migration:batch`. */
export interface BatchEvent {
  pid: number;
  /** The batch's number in this drain, from 1. */
  batch: number;
  /** Connections the successor adopted, by kind (a migration kind's name, as in the Connections frame). */
  adopted: Record<string, number>;
  /** Connections it refused (they stay here and drain), by kind. */
  refused: Record<string, number>;
  /** Adopted connections that carried unread bytes. */
  withBytes: number;
  /** From sending the batch to reading its acknowledgement, in ms. */
  durationMs: number;
  at: number;
}

const phaseChannel = diagnostics.channel(ChannelNames.phase);
const stepChannel = diagnostics.channel(ChannelNames.step);
const batchChannel = diagnostics.channel(ChannelNames.batch);
const trace = debuglog('baton');
/**
 * `BATON_OBSERVE=off`: nothing is published nor traced, not even the
 * `hasSubscribers` checks run. Only for the benchmark that shows the
 * channels cost nothing when unused (bench/observe.ts compares against it).
 */
const off = process.env.BATON_OBSERVE === 'off';

/** When each phase source last moved (for {@link PhaseEvent.durationMs}). */
const lastMove = new WeakMap<object, number>();

/**
 * Marks the start of `source`'s first phase (its constructor): the first
 * transition's duration counts from here. `source` is the generation or master.
 */
export function phaseBegins(source: object): void {
  if (off) return;
  lastMove.set(source, performance.now());
}

/**
 * A phase transition of `source` (a Generation or a Master). Call once per
 * transition, from the one place that observes its phase machine.
 */
export function publishPhase(source: object, role: PhaseEvent['role'], generation: number | undefined, from: string, to: string): void {
  if (off) return;
  const now = performance.now();
  const durationMs = now - (lastMove.get(source) ?? now);
  lastMove.set(source, now);
  if (trace.enabled) trace('%s %s (pid %d): %s -> %s after %s ms', role, generation ?? '', process.pid, from, to, durationMs.toFixed(1));
  if (!phaseChannel.hasSubscribers) return;
  phaseChannel.publish({ role, pid: process.pid, generation, from, to, durationMs, at: Date.now() } satisfies PhaseEvent);
}

/** A named protocol step (`<role>.<step>`) was reached. */
export function publishStep(step: string): void {
  if (off) return;
  if (trace.enabled) trace('step %s (pid %d)', step, process.pid);
  if (!stepChannel.hasSubscribers) return;
  stepChannel.publish({ role: step.slice(0, step.indexOf('.')), step, pid: process.pid, at: Date.now() } satisfies StepEvent);
}

/** True when someone listens on `baton:migration:batch` (or tracing is on): only then is a batch summarised. */
export function batchObserved(): boolean {
  return !off && (batchChannel.hasSubscribers || trace.enabled);
}

/** A migration batch was acknowledged. Build the payload only when {@link batchObserved}. */
export function publishBatch(event: Omit<BatchEvent, 'pid' | 'at'>): void {
  if (trace.enabled) {
    trace(
      'migration batch %d (pid %d): adopted %j, refused %j, %s ms',
      event.batch,
      process.pid,
      event.adopted,
      event.refused,
      event.durationMs.toFixed(1),
    );
  }
  if (batchChannel.hasSubscribers) batchChannel.publish({ ...event, pid: process.pid, at: Date.now() } satisfies BatchEvent);
}

/** Subscribes `fn` to channel `name`; returns the unsubscribe function. */
export function subscribe<T>(name: (typeof ChannelNames)[keyof typeof ChannelNames], fn: (event: T) => void): () => void {
  const handler = (message: unknown) => fn(message as T);
  diagnostics.subscribe(name, handler);
  return () => diagnostics.unsubscribe(name, handler);
}
