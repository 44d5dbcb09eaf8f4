/**
 * The predecessor's liveness check of a ready successor, while it drains into
 * it. Once Ready arrived the predecessor stopped accepting and counts on the
 * successor; a successor that then hangs (SIGSTOP, a deadlock, an event loop
 * that never comes back) would leave nobody serving when the predecessor
 * exits. So the predecessor pings it (feature `ping`, see protocol/frames.ts)
 * every quarter of `livenessTimeoutMs`; a Ping not answered within
 * `livenessTimeoutMs` declares it hung.
 */
import type { FramePeer } from '../protocol/frame-peer.js';

/**
 * One liveness check, started by its constructor and ended by
 * {@link Liveness.stop} (or by the successor being declared hung, or the
 * channel closing). It owns nothing: the peer stays its drain's.
 */
export class Liveness {
  readonly #peer: FramePeer;
  readonly #timeoutMs: number;
  readonly #onHung: () => Promise<void>;
  #stopped = false;
  #hung: Promise<void> | undefined;
  #pause: { timer: NodeJS.Timeout; resolve: () => void } | undefined;

  /**
   * Starts pinging `peer`. `onHung` runs once, when a Ping goes unanswered
   * for `timeoutMs`: it makes sure the successor cannot serve any more and
   * resolves when it is gone (or given up on).
   */
  constructor(peer: FramePeer, timeoutMs: number, onHung: () => Promise<void>) {
    this.#peer = peer;
    this.#timeoutMs = timeoutMs;
    this.#onHung = onHung;
    void this.#run();
  }

  /**
   * The last word, when the drain is about to end: stops the periodic Pings
   * and sends one more. `'alive'` when it is answered, `'hung'` when it is not
   * within `timeoutMs` (or the successor was declared hung already; `onHung`
   * has finished either way), `'closed'` when the channel closed first.
   */
  async final(): Promise<'alive' | 'hung' | 'closed'> {
    this.stop();
    if (this.#hung) {
      await this.#hung;
      return 'hung';
    }
    const outcome = await this.#peer.ping(this.#timeoutMs);
    if (outcome === 'pong') return 'alive';
    if (outcome === 'closed') return 'closed';
    await this.#declareHung();
    return 'hung';
  }

  /** Ends the periodic Pings. Idempotent. */
  stop(): void {
    this.#stopped = true;
    if (this.#pause) {
      clearTimeout(this.#pause.timer);
      this.#pause.resolve();
    }
  }

  #declareHung(): Promise<void> {
    this.#hung ??= this.#onHung();
    return this.#hung;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const outcome = await this.#peer.ping(this.#timeoutMs);
      // Stopped meanwhile: final() sends its own Ping and decides.
      if (this.#stopped || outcome === 'closed') return;
      if (outcome === 'timeout') {
        this.#stopped = true;
        await this.#declareHung();
        return;
      }
      await new Promise<void>((resolve) => {
        this.#pause = { timer: setTimeout(resolve, this.#timeoutMs / 4), resolve };
      });
      this.#pause = undefined;
    }
  }
}
