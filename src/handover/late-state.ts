import { BatonError, asError } from '../core/errors.js';
import { FrameType, type LateStatePayload } from '../protocol/frames.js';
import type { FramePeer } from '../protocol/frame-peer.js';

/**
 * Supplies one key's late state in the predecessor, once it drains into a
 * successor: called after the drain started (upgraded connections are being
 * closed then), it resolves with a JSON-serialisable value, or undefined to
 * send nothing. It must settle on its own within a bounded time (the Done
 * frame waits for it).
 */
export type LateStateProvider = () => unknown;

/** What a provider still running at the bound stands for. */
const EXPIRED = Symbol('expired');

/** Takes one key's late state in the successor (called once per delivery, in the order sent). */
export type LateStateReceiver = (value: unknown) => void;

/**
 * State that is complete only after the cutover, handed from a predecessor
 * to its successor while the predecessor drains (protocol feature
 * `late-state`, frame type LateState: `{key, value}`, after Draining and
 * before Done). The first user is socket.io's connection-recovery store
 * (adopt/socketio.ts): its sessions are persisted when the old generation
 * closes them, which happens only once the successor is ready.
 *
 * One instance per generation; either side uses it:
 * - predecessor: {@link LateState.provide} registers a key's provider;
 *   {@link LateState.deliver} (from the drain, for a successor whose Hello
 *   named `late-state`) runs every provider and sends one frame per key.
 * - successor: {@link LateState.receive} registers a key's receiver;
 *   {@link LateState.expect} marks that a predecessor drains into this
 *   generation (deliveries may come), {@link LateState.take} feeds a frame to
 *   the receiver, {@link LateState.end} says nothing more comes (Done, or the
 *   predecessor is gone). {@link LateState.settled} lets the app's code wait
 *   for a key's delivery — bounded by `holdMs` — so that work which needs the
 *   delivered state (restoring a session) is not done without it.
 *
 * Carries no fds. A value larger than a frame (`maxFrameBytes`) is not sent:
 * the predecessor emits a warning and the successor goes on without it.
 */
export class LateState {
  readonly #providers = new Map<string, LateStateProvider>();
  readonly #receivers = new Map<string, LateStateReceiver>();
  /** Deliveries that came before their key's receiver was registered. */
  readonly #early = new Map<string, unknown[]>();
  readonly #delivered = new Set<string>();
  readonly #waiters = new Set<() => void>();
  #open = false;

  /** Predecessor: `provider` supplies `key`'s late state at each drain into a successor (replaces an earlier one). */
  provide(key: string, provider: LateStateProvider): void {
    this.#providers.set(key, provider);
  }

  /** Successor: `receiver` takes `key`'s deliveries (those that came before it was registered first). */
  receive(key: string, receiver: LateStateReceiver): void {
    this.#receivers.set(key, receiver);
    const early = this.#early.get(key);
    this.#early.delete(key);
    for (const value of early ?? []) receiver(value);
  }

  /**
   * Predecessor: runs every provider and sends each value to `peer`, in
   * registration order. A provider that throws, or a value that cannot be
   * sent, is reported through `warn` and skipped; so is every provider still
   * running `boundMs` after the call — the successor holds its restores no
   * longer than that either (helloTimeoutMs), and the drain's Done waits for
   * this. Resolves when all were handled (never rejects).
   */
  async deliver(peer: FramePeer, warn: (err: Error) => void, boundMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<typeof EXPIRED>((resolve) => {
      timer = setTimeout(() => resolve(EXPIRED), boundMs);
    });
    try {
      for (const [key, provider] of this.#providers) {
        let value: unknown;
        try {
          value = await Promise.race([provider(), expired]);
        } catch (err) {
          warn(new BatonError('ERR_BATON_LATE_STATE', `late state '${key}' was not handed over: ${asError(err).message}`));
          continue;
        }
        if (value === EXPIRED) {
          warn(new BatonError('ERR_BATON_LATE_STATE', `late state '${key}' was not handed over: not ready within ${boundMs} ms`));
          return;
        }
        await this.#send(peer, key, value, warn);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async #send(peer: FramePeer, key: string, value: unknown, warn: (err: Error) => void): Promise<void> {
    if (value === undefined || peer.closed) return;
    try {
      await peer.send(FrameType.LateState, { key, value } satisfies LateStatePayload);
    } catch (err) {
      if (peer.closed) return;
      warn(new BatonError('ERR_BATON_LATE_STATE', `late state '${key}' was not handed over: ${asError(err).message}`));
    }
  }

  /** Successor: a predecessor drains into this generation; deliveries may come until {@link LateState.end}. */
  expect(): void {
    this.#open = true;
  }

  /** Successor: a LateState frame's payload arrived. */
  take(payload: LateStatePayload): void {
    this.#delivered.add(payload.key);
    const receiver = this.#receivers.get(payload.key);
    if (receiver) receiver(payload.value);
    else this.#early.set(payload.key, [...(this.#early.get(payload.key) ?? []), payload.value]);
    this.#wake();
  }

  /** Successor: nothing more comes from this predecessor (its Done, or it is gone). */
  end(): void {
    this.#open = false;
    this.#wake();
  }

  /**
   * Resolves once `key` was delivered, no delivery can come any more (no
   * predecessor draining into this generation, or it finished), or after
   * `holdMs` — whichever is first. Resolves at once when no predecessor drains.
   */
  settled(key: string, holdMs: number): Promise<void> {
    if (!this.#open || this.#delivered.has(key)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.#open && !this.#delivered.has(key)) return;
        done();
      };
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(done, holdMs);
      this.#waiters.add(check);
    });
  }

  #wake(): void {
    for (const check of [...this.#waiters]) check();
  }
}
