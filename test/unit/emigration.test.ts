/**
 * The predecessor's migration policy (src/migrate/emigration.ts) against a
 * fake successor and a fake clock: batching, refusals given back, and what
 * happens when migration stops — a timeout lets written batches go to the
 * (alive, silent) successor and keeps a batch whose frame was still being
 * written (closing the channel), a lost successor keeps everything, an
 * out-of-order acknowledgement breaks, and acknowledgements that arrived
 * before a failed send still count.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatonError } from '../../src/core/errors.js';
import { Emigration, MIGRATE_BATCHES_IN_FLIGHT } from '../../src/migrate/emigration.js';
import type { FramePeer } from '../../src/protocol/frame-peer.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { FakeClock, settle } from './fake-platform.js';

interface SentFrame {
  type: FrameType;
  payload: { batch: number; connections: { id: number }[] };
  fds: readonly number[];
  /** The frame is fully written (the default: at once). */
  written(): void;
  failed(err: Error): void;
}

/** A successor as the predecessor's FramePeer sees it; `expect` times out on the fake clock. */
class FakeSuccessor {
  readonly label = 'successor pid 4242';
  readonly clock = new FakeClock();
  readonly frames: SentFrame[] = [];
  closed = false;
  /** Frames are written at once unless set. */
  holdWrites = false;
  #waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | undefined;
  readonly #acks: Frame[] = [];

  send(type: FrameType, payload: unknown, fds: readonly number[] = []): Promise<void> {
    return new Promise((resolve, reject) => {
      const frame: SentFrame = { type, payload: payload as SentFrame['payload'], fds, written: resolve, failed: reject };
      this.frames.push(frame);
      if (!this.holdWrites) resolve();
    });
  }

  expect(type: FrameType, timeoutMs?: number, onTimeout?: () => Error): Promise<Frame> {
    assert.equal(type, FrameType.ConnectionsAck);
    const queued = this.#acks.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = timeoutMs === undefined ? undefined : this.clock.setTimeout(() => this.#fail(onTimeout!()), timeoutMs);
      this.#waiter = {
        resolve: (f) => (this.clock.clearTimeout(timer), resolve(f)),
        reject: (e) => (this.clock.clearTimeout(timer), reject(e)),
      };
    });
  }

  close(): void {
    this.closed = true;
    this.#fail(new BatonError('ERR_BATON_CHANNEL_CLOSED', `upgrade channel to ${this.label} closed`));
  }

  /** The successor acknowledges batch `batch`: `adopted` ids, the rest of it refused. */
  ack(batch: number, adopted: number[], refused: number[] = []): void {
    const frame = { type: FrameType.ConnectionsAck, payload: { batch, adopted, refused }, fds: [] } as unknown as Frame;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w) w.resolve(frame);
    else this.#acks.push(frame);
  }

  /** Acknowledges frame `i` (0-based) in full. */
  ackAll(i: number): void {
    const f = this.frames[i]!;
    this.ack(
      f.payload.batch,
      f.payload.connections.map((c) => c.id),
    );
  }

  /** The successor goes away. */
  lose(): void {
    this.#fail(new BatonError('ERR_BATON_CHANNEL_CLOSED', `${this.label} closed the upgrade channel`));
  }

  #fail(err: Error): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(err);
  }
}

/** An Emigration over a fake successor, and what happened to each offered connection. */
function setup(options: { batchSize?: number; timeoutMs?: number } = {}) {
  const peer = new FakeSuccessor();
  const broken: { err: Error; counts: { migrated: number; kept: number; unacknowledged: number } }[] = [];
  const emigration = new Emigration(peer as unknown as FramePeer, {
    timeoutMs: options.timeoutMs ?? 1_000,
    onReturn: () => assert.fail('offerFd connections are given back through their own callback'),
    batchSize: options.batchSize ?? 2,
    batchBytes: 1 << 20,
    onBroken: (err, counts) => broken.push({ err, counts }),
  });
  const released: number[] = [];
  const givenBack: number[] = [];
  let nextFd = 100;
  const offer = (n: number) => {
    for (let i = 0; i < n; i++) {
      const fd = nextFd++;
      assert.equal(
        emigration.offerFd(
          fd,
          'http',
          () => released.push(fd),
          () => givenBack.push(fd),
        ),
        true,
      );
    }
  };
  return { peer, emigration, broken, released, givenBack, offer };
}

test('full batches leave at once, the rest at the end of the turn; our copies close once everything is acknowledged', async () => {
  const { peer, emigration, released, offer } = setup({ batchSize: 2 });
  offer(5);
  assert.equal(peer.frames.length, 2, 'two full batches went out synchronously');
  await settle();
  assert.deepEqual(
    peer.frames.map((f) => f.fds),
    [[100, 101], [102, 103], [104]],
  );
  peer.ackAll(0);
  peer.ackAll(1);
  await settle();
  assert.deepEqual(released, [], 'nothing is closed while a batch is still in flight');
  peer.ackAll(2);
  await emigration.settled();
  assert.deepEqual(released, [100, 101, 102, 103, 104]);
  assert.equal(emigration.migrated, 5);
  assert.equal(emigration.returned, 0);
});

test('refused connections are given back to the drain', async () => {
  const { peer, emigration, released, givenBack, offer } = setup({ batchSize: 3 });
  offer(3);
  const [a, b, c] = peer.frames[0]!.payload.connections.map((x) => x.id);
  peer.ack(1, [a!, c!], [b!]);
  await emigration.settled();
  assert.deepEqual(givenBack, [101]);
  assert.deepEqual(released, [100, 102]);
  assert.equal(emigration.migrated, 2);
  assert.equal(emigration.returned, 1);
});

test('timeout: written batches are let go to the silent successor, queued ones stay', async () => {
  const { peer, emigration, broken, released, givenBack, offer } = setup({ batchSize: 1, timeoutMs: 1_000 });
  offer(MIGRATE_BATCHES_IN_FLIGHT + 2); // two wait in the queue for room
  await settle();
  assert.equal(peer.frames.length, MIGRATE_BATCHES_IN_FLIGHT, 'at most MIGRATE_BATCHES_IN_FLIGHT unacknowledged');
  await peer.clock.advance(999);
  assert.equal(broken.length, 0);
  await peer.clock.advance(1);
  assert.equal(broken.length, 1);
  assert.equal((broken[0]!.err as BatonError).code, 'ERR_BATON_MIGRATION_TIMEOUT');
  assert.match(broken[0]!.err.message, /successor pid 4242 did not acknowledge 1 migrated connections within 1000 ms/);
  assert.deepEqual(broken[0]!.counts, { migrated: 0, kept: 2, unacknowledged: MIGRATE_BATCHES_IN_FLIGHT });
  assert.equal(released.length, MIGRATE_BATCHES_IN_FLIGHT, 'the successor holds those fds: ours are closed, never read again');
  assert.equal(givenBack.length, 2);
  assert.equal(peer.closed, false, 'every frame was complete: the channel stays');
  assert.equal(emigration.unacknowledged, MIGRATE_BATCHES_IN_FLIGHT);
  assert.equal(emigration.offerFd(999, 'http', assert.fail, assert.fail), false, 'no more offers once broken');
  await emigration.settled();
});

test('timeout with a frame still being written: the channel is closed and that batch stays', async () => {
  const { peer, broken, released, givenBack, offer } = setup({ batchSize: 1, timeoutMs: 500 });
  offer(1); // written
  peer.holdWrites = true;
  offer(1); // its frame never completes
  await settle();
  await peer.clock.advance(500);
  assert.equal(peer.closed, true, 'closing the channel cancels the rest of that frame');
  assert.deepEqual(released, [100], 'the written batch is let go');
  assert.deepEqual(givenBack, [101], 'the half-written one drains here');
  assert.deepEqual(broken[0]!.counts, { migrated: 0, kept: 1, unacknowledged: 1 });
});

test('a lost successor: everything in flight and queued stays here', async () => {
  const { peer, emigration, broken, released, givenBack, offer } = setup({ batchSize: 2 });
  offer(4);
  await settle();
  peer.ackAll(0);
  await settle();
  peer.lose();
  await emigration.settled();
  assert.deepEqual(givenBack, [102, 103], 'the unacknowledged batch died with the successor: it stays');
  assert.deepEqual(released, [100, 101], 'the acknowledged batch was the successor’s');
  assert.equal((broken[0]!.err as BatonError).code, 'ERR_BATON_CHANNEL_CLOSED');
  assert.deepEqual(broken[0]!.counts, { migrated: 2, kept: 2, unacknowledged: 0 });
});

test('an acknowledgement of the wrong batch breaks migration, and nothing unacknowledged is let go', async () => {
  const { peer, emigration, broken, givenBack, offer } = setup({ batchSize: 1 });
  offer(2);
  await settle();
  peer.ack(2, [2]);
  await emigration.settled();
  assert.equal((broken[0]!.err as BatonError).code, 'ERR_BATON_UNEXPECTED_FRAME');
  assert.deepEqual(givenBack, [100, 101]);
  assert.equal(emigration.migrated, 0);
});

test('a failed send after batches that were acknowledged: those count, the failed one stays', async () => {
  const { peer, emigration, broken, released, givenBack, offer } = setup({ batchSize: 1 });
  offer(1);
  peer.holdWrites = true;
  offer(1);
  await settle();
  peer.frames[1]!.failed(new BatonError('ERR_BATON_CHANNEL_CLOSED', 'write failed: EPIPE'));
  await settle();
  assert.equal(broken.length, 0, 'the acknowledgement of batch 1 may still be waiting to be read');
  peer.ackAll(0);
  await emigration.settled();
  assert.deepEqual(released, [100]);
  assert.deepEqual(givenBack, [101]);
  assert.deepEqual(broken[0]!.counts, { migrated: 1, kept: 1, unacknowledged: 0 });
});
