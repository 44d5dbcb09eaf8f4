/**
 * The successor's side of a handover: one conversation with one predecessor,
 * the mirror of {@link PredecessorSide}. Used by start() (a new generation
 * taking over) and by Generation#absorb (a serving generation taking another
 * one's live connections): Hello both ways, the Listeners, the State; later
 * Ready, the predecessor's Draining, and then the receive loop — batches of
 * migrated connections, each acknowledged, until Done.
 *
 * This side moves no phase and emits no event: it reports what happened
 * ({@link SuccessorOutcome}) to its host, and the generation decides.
 */
import { failpoint } from '../core/failpoint.js';
import { BatonError, asError } from '../core/errors.js';
import type { LateState } from './late-state.js';
import { adoptConnections, type ImmigrationHost } from '../migrate/immigration.js';
import { closeQuietly } from '../native/socket-info.js';
import type { UnixChannel } from '../native/unix-channel.js';
import { FramePeer, isPeerLoss } from '../protocol/frame-peer.js';
import {
  FrameType,
  frameTypeName,
  hasFeature,
  type DonePayload,
  type HelloPayload,
  type ListenersPayload,
  type StatePayload,
} from '../protocol/frames.js';
import { greetPredecessor, type GreetingSettings } from './greeting.js';

/** What the successor side needs of the settings. */
export interface SuccessorSettings extends GreetingSettings {
  maxFrameBytes: number;
  preAuthFrameBytes: number;
  /** Consistency mode: the wait for the State also covers the predecessor's quiesce (up to its drain timeout). */
  drainTimeoutMs: number;
}

/** What the successor side reports to its generation; the generation moves phases and emits events. */
export type SuccessorOutcome =
  /** A batch of live connections was adopted (and acknowledged). */
  | { kind: 'connections-in'; adopted: number; refused: number }
  /** The predecessor finished draining; the channel to it is already closed. */
  | { kind: 'predecessor-done'; done: DonePayload & { pid: number } }
  /** The predecessor aborted the handover before its Draining (an Error frame, a bad frame): the takeover failed. */
  | { kind: 'aborted'; error: Error }
  /** Something went wrong that does not stop serving (a bad frame while draining). */
  | { kind: 'warning'; error: Error };

/** What the receive loop needs of its generation: where migrated connections go, and where outcomes are reported. */
export interface SuccessorHost {
  readonly immigration: ImmigrationHost;
  /** Where LateState frames go (feature `late-state`): expected from follow() until Done, an abort or the loss of the channel. */
  readonly lateState?: LateState;
  report(outcome: SuccessorOutcome): void;
}

/** What {@link SuccessorSide.takeOver} received. */
export interface Takeover {
  /** The predecessor's Hello: its pid and generation number (this one's is number + 1). */
  reply: HelloPayload;
  state: StatePayload;
}

/**
 * One successor's conversation with its predecessor.
 *
 * Call order: {@link SuccessorSide.takeOver}, then {@link SuccessorSide.follow}
 * (from here on an abort by the predecessor is reported), then
 * {@link SuccessorSide.ready} once the generation serves; the receive loop
 * starts by itself when Draining arrives and ends with Done
 * ({@link SuccessorSide.finished}).
 *
 * Fds: the channel is this side's (through its FramePeer), closed on failure,
 * on {@link SuccessorSide.close}, or when Done came. The listening fds of the
 * Listeners frame go to `onListeners`, which owns them from then on; migrated
 * connection fds go to the host's immigration (adopted or closed there).
 */
export class SuccessorSide {
  readonly peer: FramePeer;
  readonly #settings: SuccessorSettings;
  #reply: HelloPayload | undefined;
  #listenersReceived = false;
  #draining: Promise<unknown> | undefined;
  #host: SuccessorHost | undefined;
  /** The host's late state, when the predecessor speaks `late-state` (set by follow()). */
  #late: LateState | undefined;
  #finished: Promise<void> = Promise.resolve();

  /** Takes `channel` over (a connection to the predecessor's upgrade socket, or the exec path's inherited one). */
  constructor(channel: UnixChannel, settings: SuccessorSettings, label: string) {
    this.#settings = settings;
    this.peer = new FramePeer(channel, { maxFrameBytes: settings.maxFrameBytes, preAuthFrameBytes: settings.preAuthFrameBytes, label });
  }

  /** Names the predecessor in messages (`predecessor pid N` once its Hello came). */
  get label(): string {
    return this.peer.label;
  }

  /** The predecessor's Hello, once it came. */
  get reply(): HelloPayload | undefined {
    return this.#reply;
  }

  /** True once the Listeners frame came (its fds are then the caller's): a predecessor lost after it leaves this side with sockets to serve on. */
  get listenersReceived(): boolean {
    return this.#listenersReceived;
  }

  /**
   * Hello both ways (this side's says `generation`: 0 for a new one, the
   * absorbing generation's number otherwise), the Listeners frame (its entries
   * and fds go to `onListeners`, which owns the fds from then on, also when it
   * throws), then the State. Each wait is bounded by `helloTimeoutMs` (the
   * State's, in consistency mode, also by the predecessor's quiesce: its
   * drain timeout). Rejects with the predecessor's refusal (its Error frame's
   * code), ERR_BATON_HELLO_TIMEOUT / ERR_BATON_PEER_TIMEOUT, or a loss of the
   * channel (see isPeerLoss); the caller then closes this side.
   */
  async takeOver(generation: number, onListeners: (payload: ListenersPayload, fds: number[]) => void): Promise<Takeover> {
    const s = this.#settings;
    const reply = await greetPredecessor(this.peer, this.peer.channel, s, generation);
    this.#reply = reply;
    const manifest = await this.peer.expect(FrameType.Listeners, s.helloTimeoutMs, () =>
      this.#silent(FrameType.Listeners, s.helloTimeoutMs),
    );
    failpoint('successor.listeners-received');
    this.#listenersReceived = true;
    onListeners(manifest.payload, manifest.fds);
    // A predecessor asked for consistency finishes its requests in flight first (up to its drain timeout).
    const stateWaitMs = s.consistency && generation === 0 ? s.helloTimeoutMs + s.drainTimeoutMs : s.helloTimeoutMs;
    const state = await this.peer.expect(FrameType.State, stateWaitMs, () => this.#silent(FrameType.State, stateWaitMs));
    failpoint('successor.state-received');
    return { reply, state: state.payload };
  }

  /**
   * Waits, from now on, for the predecessor's answer to Ready. An abort
   * (Error frame, bad frame) is reported to `host` as `'aborted'`; a lost
   * channel is not reported here ({@link SuccessorSide.ready} tells it);
   * Draining is taken by {@link SuccessorSide.serve}. Call once, after
   * {@link SuccessorSide.takeOver}. The channel stays ref'd until serve(): with
   * its listeners deferred, it is what keeps a successor's event loop alive
   * while the app sets up.
   */
  follow(host: SuccessorHost): void {
    const peer = this.peer;
    this.#host = host;
    // Late state may come from now on, not only from Draining: this generation serves before the
    // predecessor reads its Ready, and what reaches it meanwhile for the predecessor's sessions
    // (socket.io: a long poll whose session is still open there) must wait for the delivery,
    // not be answered as unknown at once.
    const late = hasFeature(this.#reply, 'late-state') ? host.lateState : undefined;
    this.#late = late;
    late?.expect();
    const draining = peer.expect(FrameType.Draining);
    this.#draining = draining;
    draining.then(
      // Here, when it arrives: a fault placed at serve() would fire only after the app saw this generation serving.
      () => failpoint('successor.draining-received'),
      (err: unknown) => {
        late?.end();
        if (isPeerLoss(err)) return;
        peer.close();
        host.report({ kind: 'aborted', error: asError(err) });
      },
    );
  }

  /**
   * Sends Ready and waits for the predecessor's Draining within
   * `helloTimeoutMs`: a predecessor frozen after it read Ready must not keep
   * this generation from serving. Resolves with true when Draining came,
   * false at the bound (should the predecessor run again, it reads the Ready
   * and drains into this generation as usual); rejects as the answer does
   * (an abort; a lost channel: see isPeerLoss). Call once, after
   * {@link SuccessorSide.follow}.
   */
  async ready(listeners: number): Promise<boolean> {
    const draining = this.#draining;
    if (!draining) throw new Error('SuccessorSide.ready() called before follow()');
    await this.peer.send(FrameType.Ready, { listeners });
    failpoint('successor.ready-sent');
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<false>((resolve) => {
      // Judged after the poll phase: a Draining that came during a pause of this event loop counts.
      timer = setTimeout(() => setImmediate(() => resolve(false)), this.#settings.helloTimeoutMs);
    });
    try {
      return await Promise.race([draining.then(() => true as const), bound]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * This generation serves (its phase is `serving`): migrated connections
   * are taken from now on. The receive loop runs once Draining came — at once
   * if it already has, its frames waiting on the channel meanwhile — until
   * Done, reporting to the host given to follow(). The channel no longer keeps
   * the process alive: only the predecessor's Done is still to come. Call
   * once, after {@link SuccessorSide.ready}, whatever it resolved with.
   */
  serve(): void {
    const host = this.#host;
    const draining = this.#draining;
    if (!host || !draining) throw new Error('SuccessorSide.serve() called before follow()');
    this.peer.channel.unref();
    this.#finished = draining.then(
      () => this.#receiveConnections(host),
      () => undefined, // reported by follow() or ready()
    );
  }

  /** Settles when the receive loop ended (Done, a loss, a failure: all reported), or at once when it never started. Never rejects. */
  get finished(): Promise<void> {
    return this.#finished;
  }

  /** Closes the channel (and every fd still queued on it). Idempotent. */
  close(): void {
    this.peer.close();
  }

  /** After Draining: migrated connections, each batch acknowledged, then Done. */
  async #receiveConnections(host: SuccessorHost): Promise<void> {
    const peer = this.peer;
    // Expected since follow(), and only from a predecessor that speaks it: a reconnect is not held for one that never sends.
    const late = this.#late;
    try {
      for (;;) {
        const frame = await peer.receive();
        if (frame.type === FrameType.LateState) {
          late?.take(frame.payload);
          continue;
        }
        if (frame.type === FrameType.Connections) {
          failpoint('successor.connections-received');
          const { ack } = adoptConnections(frame, host.immigration);
          await peer.send(FrameType.ConnectionsAck, ack);
          failpoint('successor.connections-acked');
          host.report({ kind: 'connections-in', adopted: ack.adopted.length, refused: ack.refused.length });
          continue;
        }
        if (frame.type !== FrameType.Done) {
          for (const fd of frame.fds) closeQuietly(fd);
          throw new BatonError('ERR_BATON_UNEXPECTED_FRAME', `${peer.label} sent a ${frameTypeName(frame.type)} frame while draining`);
        }
        late?.end();
        failpoint('successor.done-received');
        // Release the channel first: when the generation reports Done, nothing of the predecessor is held.
        peer.close();
        host.report({ kind: 'predecessor-done', done: { ...frame.payload, pid: this.#reply?.pid ?? 0 } });
        return;
      }
    } catch (err) {
      late?.end();
      peer.close();
      if (!isPeerLoss(err)) host.report({ kind: 'warning', error: asError(err) });
    }
  }

  #silent(type: FrameType, ms: number): BatonError {
    return new BatonError('ERR_BATON_PEER_TIMEOUT', `${this.peer.label} sent no ${frameTypeName(type)} frame within ${ms} ms`);
  }
}
