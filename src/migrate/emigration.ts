import type net from 'node:net';
import { debuglog } from 'node:util';
import { BatonError, asError, isBatonError } from '../core/errors.js';
import type { FramePeer } from '../protocol/frame-peer.js';
import { FrameType, type ConnectionsAckPayload, type MigratedConnection, type MigratedKind } from '../protocol/frames.js';
import { resumeReading, socketFd, stopReading } from './socket-control.js';

const debug = debuglog('baton:migrate');

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
  /** Gone before it could leave (closed by the client meanwhile). */
  gone(): boolean;
  /** Adopted by the successor: close this process's fd, nothing more. */
  release(): void;
  /** Refused, or the successor went away: it stays here. */
  giveBack(): void;
}

/**
 * The predecessor's side of connection migration: connections offered by the
 * drain are frozen (libuv stops reading, so later bytes stay in the kernel and
 * travel with the fd), sent to the successor in batches with their fds, and
 * released once the successor says it adopted them — by closing this process's
 * fd only (`destroy()`, never `end()`: a shutdown would reach the client as a
 * FIN). A connection the successor refuses, or that is in flight when the
 * successor goes away, is given back to the drain (`onReturn`).
 */
export class Emigration {
  readonly #peer: FramePeer;
  readonly #timeoutMs: number;
  readonly #onReturn: (socket: net.Socket) => void;
  readonly #onBatch: ((info: { adopted: number; refused: number; withBytes: number }) => void) | undefined;
  readonly #onBroken: ((err: Error, counts: { migrated: number; kept: number; unacknowledged: number }) => void) | undefined;
  readonly #batchSize: number;
  readonly #batchBytes: number;
  readonly #queue: Leaving[] = [];
  /** Adopted by the successor; our copies are closed once the queue is empty. */
  readonly #toRelease: Leaving[] = [];
  #nextId = 1;
  #batch = 0;
  #sending = false;
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
       * and how many of an unacknowledged batch were let go to it.
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

  /** Connections of a batch the successor never acknowledged (let go: it holds them). */
  get unacknowledged(): number {
    return this.#unacknowledged;
  }

  /** Connections offered but kept here (refused, failed, successor gone). */
  get returned(): number {
    return this.#returned;
  }

  /** Resolves when nothing is queued or in flight. */
  settled(): Promise<void> {
    if (!this.#sending && this.#queue.length === 0) return Promise.resolve();
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
   */
  offer(socket: net.Socket, listener: string, kind: MigratedKind, extra: { head?: Buffer; state?: unknown } = {}): boolean {
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
          resumeReading(socket);
          this.#onReturn(socket);
        },
      },
    );
    return true;
  }

  /**
   * Offers an idle HTTP/1.1 connection held only as an fd (one adopted from a
   * predecessor and not used since: see Parking). `release` closes the fd;
   * `giveBack` puts it back into service here.
   */
  offerFd(fd: number, listener: string, release: () => void, giveBack: () => void): boolean {
    if (this.#broken) return false;
    this.#enqueue(fd, { listener, kind: 'http1' }, { gone: () => false, release, giveBack });
    return true;
  }

  #enqueue(fd: number, what: Omit<MigratedConnection, 'id'>, actions: Pick<Leaving, 'gone' | 'release' | 'giveBack'>): void {
    if (this.#nextId === 1) this.#firstOffer = performance.now();
    const id = this.#nextId++;
    const entry: MigratedConnection = { id, listener: what.listener, kind: what.kind };
    if (what.head !== undefined) entry.head = what.head;
    if (what.state !== undefined) entry.state = what.state;
    this.#queue.push({ id, entry, fd, ...actions });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#sending) return;
    this.#scheduled = true;
    // Coalesce the offers of one turn of the event loop into one batch.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#send();
    });
  }

  async #send(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      while (this.#queue.length > 0 && !this.#broken) {
        const batch = this.#queue.splice(0, this.#batchCount()).filter((l) => !l.gone());
        if (batch.length === 0) continue;
        const broken = await this.#sendBatch(batch);
        if (broken) {
          // Queued behind the batch that failed: they stay too.
          const queued = this.#queue.splice(0);
          for (const l of queued) this.#giveBack(l);
          const letGo = isBatonError(broken, 'ERR_BATON_MIGRATION_TIMEOUT') ? batch.length : 0;
          this.#onBroken?.(broken, { migrated: this.#migrated, kept: batch.length - letGo + queued.length, unacknowledged: letGo });
        }
      }
    } finally {
      this.#sending = false;
      if (this.#queue.length > 0 && !this.#broken) this.#schedule();
      else {
        for (const l of this.#toRelease.splice(0)) l.release();
        this.#idle?.();
      }
    }
  }

  /** How many queued connections the next batch takes: at most batchSize, and at least one, within batchBytes. */
  #batchCount(): number {
    let bytes = 0;
    let n = 0;
    for (const l of this.#queue) {
      if (n >= this.#batchSize) break;
      bytes += 96 + (l.entry.head?.length ?? 0) + (l.entry.state === undefined ? 0 : JSON.stringify(l.entry.state).length);
      if (n > 0 && bytes > this.#batchBytes) break;
      n++;
    }
    return n;
  }

  /** Sends one batch; resolves with the error when migration broke (the batch was given back). */
  async #sendBatch(batch: Leaving[]): Promise<Error | undefined> {
    const number = ++this.#batch;
    const started = performance.now();
    debug('batch %d: sending %d, %s ms after the first offer', number, batch.length, (started - this.#firstOffer).toFixed(1));
    let ack: ConnectionsAckPayload;
    try {
      await this.#peer.send(
        FrameType.Connections,
        { batch: number, connections: batch.map((l) => l.entry) },
        batch.map((l) => l.fd),
      );
      const frame = await this.#peer.expect(
        FrameType.ConnectionsAck,
        this.#timeoutMs,
        () =>
          new BatonError(
            'ERR_BATON_MIGRATION_TIMEOUT',
            `${this.#peer.label} did not acknowledge ${batch.length} migrated connections within ${this.#timeoutMs} ms`,
          ),
      );
      ack = frame.payload as ConnectionsAckPayload;
      if (ack?.batch !== number || !Array.isArray(ack.adopted) || !Array.isArray(ack.refused)) {
        throw new BatonError(
          'ERR_BATON_UNEXPECTED_FRAME',
          `${this.#peer.label} acknowledged batch ${String(ack?.batch)} instead of ${number}`,
        );
      }
    } catch (err) {
      this.#broken = asError(err);
      debug('migration broken: %s', this.#broken.message);
      if (isBatonError(err, 'ERR_BATON_MIGRATION_TIMEOUT')) {
        // The successor is alive but silent: it holds the fds and may adopt
        // them later. Reading them here again could make two processes read one
        // connection, so the batch is let go as if adopted (our fds closed);
        // only connections not yet sent stay and drain here.
        for (const l of batch) {
          this.#unacknowledged++;
          l.release();
        }
      } else {
        // The successor is gone: whatever it received died with it (its fds
        // closed), so every connection of the batch stays and drains here.
        for (const l of batch) this.#giveBack(l);
      }
      return this.#broken;
    }
    const adopted = new Set(ack.adopted);
    const released: Leaving[] = [];
    for (const l of batch) {
      if (adopted.has(l.id)) {
        this.#migrated++;
        released.push(l);
      } else {
        this.#giveBack(l);
      }
    }
    // The successor's copies keep these connections alive; closing ours waits
    // until nothing is left to send (releasing a socket costs ~10 µs), so the
    // event loop reads the next acknowledgement on time.
    this.#toRelease.push(...released);
    const withBytes = batch.filter((l) => adopted.has(l.id) && l.entry.head !== undefined).length;
    this.#onBatch?.({ adopted: adopted.size, refused: ack.refused.length, withBytes });
    debug('batch %d: %d adopted, %d refused in %s ms', number, adopted.size, ack.refused.length, (performance.now() - started).toFixed(1));
    return undefined;
  }

  #giveBack(l: Leaving): void {
    this.#returned++;
    l.giveBack();
  }
}
