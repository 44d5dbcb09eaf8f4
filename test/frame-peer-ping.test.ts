/**
 * Feature `ping` of the handover protocol, over a real socketpair: a FramePeer
 * answers every Ping with a Pong of the same number and neither frame ever
 * reaches receive(); ping() tells a Pong from silence (a peer that reads
 * nothing) and from a closed channel, and never rejects.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UnixChannel } from '../src/native/unix-channel.js';
import { FramePeer } from '../src/protocol/frame-peer.js';
import { FrameType } from '../src/protocol/frames.js';

function pair(): { a: FramePeer; b: UnixChannel } {
  const { channel, peerFd } = UnixChannel.pair();
  return { a: new FramePeer(channel, { maxFrameBytes: 1 << 20, label: 'a' }), b: UnixChannel.fromFd(peerFd) };
}

describe('FramePeer ping', () => {
  it('a peer answers Pings by itself; receive() only sees the protocol frames', async () => {
    const { a, b } = pair();
    const other = new FramePeer(b, { maxFrameBytes: 1 << 20, label: 'b' });
    try {
      const received = other.receive(5000);
      assert.deepEqual(await Promise.all([a.ping(5000), a.ping(5000), a.ping(5000)]), ['pong', 'pong', 'pong']);
      await a.send(FrameType.Draining, { connections: 0 });
      assert.equal((await received).type, FrameType.Draining);
    } finally {
      a.close();
      other.close();
    }
  });

  it("a peer that reads nothing is 'timeout', a closed channel 'closed'", async () => {
    const { a, b } = pair();
    try {
      const started = performance.now();
      assert.equal(await a.ping(200), 'timeout');
      assert.ok(performance.now() - started >= 190);
      const pending = a.ping(10_000);
      b.close();
      assert.equal(await pending, 'closed');
      assert.equal(await a.ping(10_000), 'closed');
    } finally {
      a.close();
      b.close();
    }
  });
});
