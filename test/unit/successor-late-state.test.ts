/**
 * When the successor starts to wait for late state (src/handover/successor.ts):
 * from follow() on, not from the predecessor's Draining. A new generation
 * serves before its predecessor has read the Ready, and what reaches it in
 * that moment for the predecessor's sessions (socket.io: a long poll whose
 * session is still open there, test/socketio-polling.test.ts) must wait for
 * the delivery; answered at once, it got 400 and its client sent a message
 * the old generation had processed again. The predecessor here is a FramePeer
 * on the other end of a socketpair, in this process.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { LateState } from '../../src/handover/late-state.js';
import { SuccessorSide, type SuccessorOutcome } from '../../src/handover/successor.js';
import { UnixChannel } from '../../src/native/unix-channel.js';
import { FramePeer } from '../../src/protocol/frame-peer.js';
import { FEATURES, FrameType, PROTOCOL_VERSION, type HelloPayload } from '../../src/protocol/frames.js';

const settings = {
  name: 'app',
  helloTimeoutMs: 5_000,
  allowRoot: true,
  allowedUids: [],
  maxFrameBytes: 1 << 20,
  preAuthFrameBytes: 64 * 1024,
  drainTimeoutMs: 1_000,
};

/** Both ends of every test's channel, closed after it whatever it asserted (an open channel keeps the process alive). */
const ends: { close(): void }[] = [];
afterEach(() => {
  for (const end of ends.splice(0)) end.close();
});

/** A successor side that took over from the in-process predecessor `pred`, and follows it with `late`. */
async function takenOver(features: readonly string[]) {
  const { channel, peerFd } = UnixChannel.pair();
  const pred = new FramePeer(UnixChannel.fromFd(peerFd), { maxFrameBytes: 1 << 20, label: 'successor' });
  const side = new SuccessorSide(channel, settings, 'predecessor');
  ends.push(pred, side);
  const taking = side.takeOver(0, () => undefined);
  await pred.expect(FrameType.Hello, 5_000);
  const reply: HelloPayload = {
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    generation: 1,
    name: 'app',
    node: process.version,
    features: [...features],
  };
  await pred.send(FrameType.Hello, reply);
  await pred.send(FrameType.Listeners, { listeners: [] });
  await pred.send(FrameType.State, { present: false });
  await taking;
  const late = new LateState();
  const outcomes: SuccessorOutcome[] = [];
  side.follow({ immigration: undefined as never, lateState: late, report: (o) => outcomes.push(o) });
  return { side, pred, late, outcomes };
}

test('late state is awaited from follow(): a wait begun before the Draining ends with the delivery', async () => {
  const { side, pred, late } = await takenOver(FEATURES);
  const order: string[] = [];
  late.receive('socket.io', (value) => order.push(`received ${JSON.stringify(value)}`));
  // Asked before Ready and Draining, as a poll that reached this generation early asks.
  const settled = late.settled('socket.io', 5_000).then(() => order.push('settled'));
  const ready = side.ready(1);
  await pred.expect(FrameType.Ready, 5_000);
  await pred.send(FrameType.Draining, { connections: 1 });
  assert.equal(await ready, true);
  side.serve();
  await pred.send(FrameType.LateState, { key: 'socket.io', value: { stranded: 1 } });
  await settled;
  assert.deepEqual(order, ['received {"stranded":1}', 'settled'], 'settled only once the value was taken');
  await pred.send(FrameType.Done, { drained: 0, migrated: 0, forced: 0, durationMs: 1 });
  await side.finished;
  pred.close();
});

test('a predecessor lost before its Draining ends the wait', async () => {
  const { side, pred, late } = await takenOver(FEATURES);
  let settled = false;
  const waiting = late.settled('socket.io', 60_000).then(() => (settled = true));
  pred.close();
  await waiting;
  assert.equal(settled, true);
  side.close();
});

test('a predecessor without the late-state feature holds nothing', async () => {
  const { side, pred, late } = await takenOver(['ping']);
  let settled = false;
  await late.settled('socket.io', 60_000).then(() => (settled = true));
  assert.equal(settled, true);
  side.close();
  pred.close();
});
