/**
 * A supervised worker's side of the master's metrics: its diagnostics events
 * (phase transitions of its generation, migration batches it sent) go to the
 * master over the IPC channel the worker already has.
 */
import { ChannelNames, subscribe, type BatchEvent, type PhaseEvent } from '../core/channels.js';
import type { ObservedEvent } from './master-metrics.js';

/**
 * Subscribes to this process's `baton:phase` (generations only) and
 * `baton:migration:batch` channels and hands each event to `send`, for the
 * life of the process. Returns the unsubscribe function.
 */
export function forwardObservations(send: (e: ObservedEvent) => void): () => void {
  const offPhase = subscribe<PhaseEvent>(ChannelNames.phase, (event) => {
    if (event.role === 'generation') send({ channel: 'phase', event });
  });
  const offBatch = subscribe<BatchEvent>(ChannelNames.batch, (event) => send({ channel: 'batch', event }));
  return () => {
    offPhase();
    offBatch();
  };
}
