import { failpoint } from '../core/failpoint.js';
import type net from 'node:net';
import { debuglog } from 'node:util';
import { batchObserved, publishBatch } from '../core/channels.js';
import { BatonError, asError, isBatonError } from '../core/errors.js';
import type { FramePeer } from '../protocol/frame-peer.js';
import { FrameType, type ConnectionsAckPayload, type MigratedConnection, type MigratedKind } from '../protocol/frames.js';
import { resumeReading, socketFd, stopReading } from './socket-control.js';

const debug = debuglog('baton:migrate');

/** Publishes `baton:migration:batch` for a settled batch (only called when someone observes it). */
function publishBatchOf(batch: number, leaving: readonly Leaving[], adopted: ReadonlySet<number>, started: number): void {
  const out = {
    batch,
    adopted: {} as Record<string, number>,
    refused: {} as Record<string, number>,
    withBytes: 0,
    durationMs: performance.now() - started,
  };
  for (const l of leaving) {
    const into = adopted.has(l.id) ? out.adopted : out.refused;
    into[l.entry.kind] = (into[l.entry.kind] ?? 0) + 1;
    if (adopted.has(l.id) && l.entry.head !== undefined) out.withBytes++;
  }
  publishBatch(out);
}

/** How the raw connections of one listener migrate (see Generation#migrateSockets). */
export interface SocketMigration {
  /** Predecessor: the JSON-serialisable state of a connection that leaves. */
  state?: (socket: net.Socket) => unknown;
  /** Successor: takes over a migrated socket; bytes read but not consumed are already unshifted. */
  adopt: (socket: net.Socket, state: unknown) => void;
}

interface Leaving {
  id: number;
  entry: MigratedConnection;
  fd: number;
  /** Estimated bytes of its entry in a Connections frame. */
  bytes: number;
  /** Gone before it could leave (closed by the client meanwhile). */
  gone(): boolean;
  /** Adopted by the successor: close this process's fd, nothing more. */
  release(): void;
  /** Refused, or the successor went away: it stays here. */
  giveBack(): void;
}

/** A batch sent and not acknowledged yet. */
interface InFlight {
  number: number;
  batch: Leaving[];
  /** Every byte (and fd) of its frame was handed to the kernel. */
  written: boolean;
  /** Its frame could not be written (the successor is gone, most likely). */
  failed?: Error;
}

/**
 * Most batches sent and not yet acknowledged. The successor adopts one batch
 * while the next ones travel, and this process goes on freezing and sending
 * connections meanwhile (two processes, two cores); the bound keeps a slow
 * successor from being sent everything at once (what is in flight when it
 * times out is let go to it, see {@link Emigration}).
 */
export const MIGRATE_BATCHES_IN_FLIGHT = 16;

/**
 * The predecessor's side of connection migration: connections offered by the
 * drain are frozen (libuv stops reading, so later bytes stay in the kernel and
 * travel with the fd), sent to the successor in batches with their fds, and
 * released once the successor says it adopted them — by closing this process's
 * fd only (`destroy()`, never `end()`: a shutdown would reach the client as a
 * FIN). A connection the successor refuses, or that is in flight when the
 * successor goes away, is given back to the drain (`onReturn`).
 *
 * Batches are pipelined: a batch goes out as soon as it is full (or at the end
 * of the event-loop turn that offered its connections), up to
 * {@link MIGRATE_BATCHES_IN_FLIGHT} unacknowledged at once; acknowledgements
 * come back in order. When the oldest is not acknowledged within `timeoutMs`,
 * every batch in flight is let go to the (alive) successor, which holds those
 * fds — except one whose frame is still being written: the channel is then
 * closed, which cancels the rest of that frame (the successor never completes
 * it and closes what it got of it), and that batch stays.
 */
export class Emigration {
  readonly #peer: FramePeer;
  readonly #timeoutMs: number;
  readonly #onReturn: (socket: net.Socket) => void;
  readonly #onBatch: ((info: { adopted: number; refused: number; withBytes: number }) => void) | undefined;
  readonly #onBroken: ((err: Error, counts: { migrated: number; kept: number; unacknowledged: number }) => void) | undefined;
  readonly #batchSize: number;
  readonly #batchBytes: number;
  /** Offered, not sent yet. */
  #queue: Leaving[] = [];
  #queuedBytes = 0;
  /** Sent, acknowledgement pending, oldest first. */
  readonly #inFlight: InFlight[] = [];
  /** Adopted by the successor; our copies are closed once nothing is queued or in flight. */
  readonly #toRelease: Leaving[] = [];
  #nextId = 1;
  #batch = 0;
  #reading = false;
  #scheduled = false;
  #broken: Error | undefined;
  #migrated = 0;
  #returned = 0;
  #unacknowledged = 0;
  #firstOffer = 0;
  #idle: (() => void) | undefined;

  constructor(
    peer: FramePeer,
    options: {
      timeoutMs: number;
      onReturn: (socket: net.Socket) => void;
      /** Told after each acknowledged batch. */
      onBatch?: (info: { adopted: number; refused: number; withBytes: number }) => void;
      /** Most connections per Connections frame. */
      batchSize: number;
      /** Largest payload of one Connections frame (heads and states count): keep under maxFrameBytes. */
      batchBytes: number;
      /**
       * Told once when migration stops for good (successor gone, broken, too
       * slow): how many connections it adopted before, how many were kept here,
       * and how many of unacknowledged batches were let go to it.
       */
      onBroken?: (err: Error, counts: { migrated: number; kept: number; unacknowledged: number }) => void;
    },
  ) {
    this.#peer = peer;
    this.#timeoutMs = options.timeoutMs;
    this.#onReturn = options.onReturn;
    this.#onBatch = options.onBatch;
    this.#onBroken = options.onBroken;
    this.#batchSize = options.batchSize;
    this.#batchBytes = options.batchBytes;
  }

  /** Connections the successor adopted. */
  get migrated(): number {
    return this.#migrated;
  }

  /** Connections of batches the successor never acknowledged (let go: it holds them). */
  get unacknowledged(): number {
    return this.#unacknowledged;
  }

  /** Connections offered but kept here (refused, failed, successor gone). */
  get returned(): number {
    return this.#returned;
  }

  /** Resolves when nothing is queued or in flight. */
  settled(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.#idle;
      this.#idle = () => {
        prev?.();
        resolve();
      };
    });
  }

  /**
   * Offers a connection. Returns false when it cannot leave (migration broken,
   * no fd); the caller drains it as before. The socket must be at a clean
   * boundary: an idle HTTP/1.1 connection, or a raw one whose writes flushed.
   * `head` is the bytes taken out of the stream to travel with it; if the
   * connection comes back (refused, successor gone), `restore` runs first and
   * must undo what the caller did to offer it (put `head` back, resume the
   * stream), or those bytes are lost.
   */
  offer(
    socket: net.Socket,
    listener: string,
    kind: MigratedKind,
    extra: { head?: Buffer; state?: unknown; restore?: () => void } = {},
  ): boolean {
    if (this.#broken || socket.destroyed) return false;
    const fd = socketFd(socket);
    if (fd === undefined || !stopReading(socket)) return false;
    const head = extra.head && extra.head.length > 0 ? extra.head.toString('base64') : undefined;
    this.#enqueue(
      fd,
      { listener, kind, head, state: extra.state },
      {
        gone: () => socket.destroyed,
        // destroy() closes this process's fd only; never end(): a shutdown would reach the client as a FIN.
        release: () => socket.destroy(),
        giveBack: () => {
          extra.restore?.();
          resumeReading(socket);
          this.#onReturn(socket);
        },
      },
    );
    return true;
  }

  /**
   * Offers a connection held only as an fd (an idle HTTP/1.1 connection
   * adopted from a predecessor and not used since: see Parking), of migration
   * kind `kind`. `release` closes the fd; `giveBack` puts it back into service here.
   */
  offerFd(fd: number, listener: string, kind: MigratedKind, release: () => void, giveBack: () => void): boolean {
    if (this.#broken) return false;
    this.#enqueue(fd, { listener, kind }, { gone: () => false, release, giveBack });
    return true;
  }

  #enqueue(fd: number, what: Omit<MigratedConnection, 'id'>, actions: Pick<Leaving, 'gone' | 'release' | 'giveBack'>): void {
    if (this.#nextId === 1) this.#firstOffer = performance.now();
    const id = this.#nextId++;
    const entry: MigratedConnection = { id, listener: what.listener, kind: what.kind };
    let bytes = 96;
    if (what.head !== undefined) {
      entry.head = what.head;
      bytes += what.head.length;
    }
    if (what.state !== undefined) {
      entry.state = what.state;
      bytes += JSON.stringify(what.state)?.length ?? 0;
    }
    this.#queue.push({ id, entry, fd, bytes, ...actions });
    this.#queuedBytes += bytes;
    // A full batch leaves at once, so the successor adopts it while this process freezes the next ones.
    if (this.#queue.length >= this.#batchSize || this.#queuedBytes >= this.#batchBytes) this.#pump(false);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0) return;
    this.#scheduled = true;
    // What one turn of the event loop offered and did not fill a batch leaves at its end.
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump(true);
    });
  }

  /** Sends queued connections while fewer than MIGRATE_BATCHES_IN_FLIGHT batches are unacknowledged: full batches, and with `partial` the rest too. */
  #pump(partial: boolean): void {
    while (!this.#broken && this.#queue.length > 0 && this.#inFlight.length < MIGRATE_BATCHES_IN_FLIGHT) {
      if (!partial && this.#queue.length < this.#batchSize && this.#queuedBytes < this.#batchBytes) break;
      const batch = this.#takeBatch().filter((l) => !l.gone());
      if (batch.length > 0) this.#sendBatch(batch);
    }
    this.#settleIfIdle();
  }

  /** Takes the next batch from the queue: at most batchSize, and at least one, within batchBytes. */
  #takeBatch(): Leaving[] {
    let bytes = 0;
    let n = 0;
    for (const l of this.#queue) {
      if (n >= this.#batchSize || (n > 0 && bytes + l.bytes > this.#batchBytes)) break;
      bytes += l.bytes;
      n++;
    }
    this.#queuedBytes -= bytes;
    if (n === this.#queue.length) {
      const all = this.#queue;
      this.#queue = [];
      return all;
    }
    return this.#queue.splice(0, n);
  }

  #sendBatch(batch: Leaving[]): void {
    const f: InFlight = { number: ++this.#batch, batch, written: false };
    this.#inFlight.push(f);
    debug('batch %d: sending %d, %s ms after the first offer', f.number, batch.length, (performance.now() - this.#firstOffer).toFixed(1));
    this.#peer
      .send(
        FrameType.Connections,
        { batch: f.number, connections: batch.map((l) => l.entry) },
        batch.map((l) => l.fd),
      )
      .then(
        () => {
          f.written = true;
          failpoint('predecessor.connections-sent');
        },
        // Not a break yet: acknowledgements of earlier batches may be waiting to be
        // read (a successor that dies right after acknowledging owned those
        // connections); the ack loop stops when it reaches this batch.
        (err: unknown) => {
          f.failed = asError(err);
          if (!this.#reading) this.#break(f.failed);
        },
      );
    void this.#readAcks();
  }

  /** Reads the acknowledgements of the batches in flight, in order, while there are any. */
  async #readAcks(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      while (!this.#broken && this.#inFlight.length > 0) {
        const f = this.#inFlight[0]!;
        if (f.failed) {
          this.#break(f.failed);
          return;
        }
        const started = performance.now();
        let ack: ConnectionsAckPayload;
        try {
          const frame = await this.#peer.expect(
            FrameType.ConnectionsAck,
            this.#timeoutMs,
            () =>
              new BatonError(
                'ERR_BATON_MIGRATION_TIMEOUT',
                `${this.#peer.label} did not acknowledge ${f.batch.length} migrated connections within ${this.#timeoutMs} ms`,
              ),
          );
          ack = frame.payload; // decoded with its schema (protocol/payloads.ts)
          if (ack.batch !== f.number) {
            throw new BatonError(
              'ERR_BATON_UNEXPECTED_FRAME',
              `${this.#peer.label} acknowledged batch ${ack.batch} instead of ${f.number}`,
            );
          }
        } catch (err) {
          this.#break(asError(err));
          return;
        }
        if (this.#broken) return; // a send failed meanwhile: already settled
        this.#inFlight.shift();
        this.#settleBatch(f, ack, started);
        this.#pump(true);
      }
    } finally {
      this.#reading = false;
    }
  }

  #settleBatch(f: InFlight, ack: ConnectionsAckPayload, started: number): void {
    const adopted = new Set(ack.adopted);
    if (batchObserved()) publishBatchOf(f.number, f.batch, adopted, started);
    let withBytes = 0;
    for (const l of f.batch) {
      if (adopted.has(l.id)) {
        this.#migrated++;
        if (l.entry.head !== undefined) withBytes++;
        // The successor's copies keep these connections alive; closing ours waits
        // until nothing is left to send (releasing a socket costs ~10 µs), so the
        // event loop sends and reads acknowledgements on time.
        this.#toRelease.push(l);
      } else {
        this.#giveBack(l);
      }
    }
    this.#onBatch?.({ adopted: adopted.size, refused: ack.refused.length, withBytes });
    debug(
      'batch %d: %d adopted, %d refused, acknowledged %s ms after the previous',
      f.number,
      adopted.size,
      ack.refused.length,
      (performance.now() - started).toFixed(1),
    );
  }

  /** Migration stops for good: settles every batch in flight and everything queued (see the class comment). */
  #break(err: Error): void {
    if (this.#broken) return;
    this.#broken = err;
    debug('migration broken: %s', err.message);
    const timeout = isBatonError(err, 'ERR_BATON_MIGRATION_TIMEOUT');
    const inFlight = this.#inFlight.splice(0);
    // A frame still being written could reach the successor later, or only in part: closing
    // the channel cancels the rest of it, so its connections can stay here.
    if (timeout && inFlight.some((f) => !f.written)) this.#peer.close();
    let letGo = 0;
    let kept = 0;
    for (const f of inFlight) {
      if (timeout && f.written) {
        // The successor is alive but silent: it holds the fds and may adopt
        // them later. Reading them here again could make two processes read one
        // connection, so the batch is let go as if adopted (our fds closed).
        letGo += f.batch.length;
        for (const l of f.batch) l.release();
      } else {
        // The successor is gone (whatever it received died with it), or never
        // got all of this batch: every connection of it stays and drains here.
        kept += f.batch.length;
        for (const l of f.batch) this.#giveBack(l);
      }
    }
    this.#unacknowledged += letGo;
    const queued = this.#queue.splice(0);
    this.#queuedBytes = 0;
    for (const l of queued) this.#giveBack(l);
    this.#onBroken?.(err, { migrated: this.#migrated, kept: kept + queued.length, unacknowledged: letGo });
    this.#settleIfIdle();
  }

  #isIdle(): boolean {
    return this.#queue.length === 0 && this.#inFlight.length === 0;
  }

  /** Once nothing is queued or in flight: closes our copies of adopted connections and tells settled(). */
  #settleIfIdle(): void {
    if (!this.#isIdle()) return;
    for (const l of this.#toRelease.splice(0)) l.release();
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.();
  }

  #giveBack(l: Leaving): void {
    this.#returned++;
    l.giveBack();
  }
}
