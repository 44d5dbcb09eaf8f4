/**
 * UDP sockets are handed over losslessly: two echo clients send numbered
 * datagrams at a steady rate — one to the fixture's unconnected 'udp'
 * listener, one from the peer the 'udp-peer' socket is connected to — across
 * 10 upgrades of each library path (takeover, exec). Every datagram is
 * answered exactly once (0 lost, 0 duplicated); every datagram sent after the
 * predecessor stopped reading (its 'draining' phase) is answered by a newer
 * generation, so the predecessor read nothing after its successor's ready;
 * replies come from the new generation after each upgrade. The fixture
 * answers 20 ms after it read a datagram, so a predecessor that closed its
 * socket at ready (instead of after the linger) would lose the replies to
 * what it read last.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { EventLog, fixture, killAll, pidsOf, predecessorDone, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';
import { sized } from './helpers/size.js';
import { UdpEchoClient, assertSentThroughout } from './helpers/udp-echo.js';

const UPGRADES = sized(10, 4);
/** One datagram per client every TICK_MS (250/s each). */
const TICK_MS = 4;

for (const via of ['takeover', 'exec'] as const) {
  describe(`UDP across ${UPGRADES} ${via} upgrades`, () => {
    const log = new EventLog();
    const clients: UdpEchoClient[] = [];
    after(() => {
      for (const c of clients) c.close();
      killAll(pidsOf(log));
    });

    it('answers every datagram exactly once, the newest generation after each upgrade', async () => {
      const plain = await UdpEchoClient.open('plain');
      const peer = await UdpEchoClient.open('peer');
      clients.push(plain, peer);
      const env = {
        BATON_SOCKET_DIR: tempDir(),
        UDP: '1',
        UDP_PEER_PORT: String(peer.port),
        UDP_REPLY_DELAY_MS: '20',
      };
      spawnFixture(fixture('server'), env, log);
      const first = await log.waitFor((e) => e.event === 'ready' && e.generation === 1, 'generation 1 ready');
      const listening = log.events.find((e) => e.event === 'listening' && e.pid === first.pid)!;
      const udpPort = listening.udp as number;
      const peerPort = listening.udpPeer as number;
      plain.start(udpPort, TICK_MS);
      peer.start(peerPort, TICK_MS);
      await plain.waitReply((r) => r.generation === 1, 'a reply from generation 1');
      await peer.waitReply((r) => r.generation === 1, 'a reply from generation 1');

      /** Per upgrade: the first datagram numbers each client sent after the predecessor stopped reading. */
      const boundaries: { generation: number; plain: number; peer: number }[] = [];
      let current = first.pid;
      for (let g = 2; g <= UPGRADES + 1; g++) {
        const since = log.events.length;
        const stopped = log.waitFor(
          (e) => e.event === 'phase' && e.generation === g - 1 && (e.args as string[])[0] === 'draining',
          `generation ${g - 1} draining`,
          60_000,
          since,
        );
        const readyP = upgradeFixture(log, env, via, current, g, since);
        await stopped;
        // Read in the microtask after the line arrived, before the clients' next tick.
        boundaries.push({ generation: g, plain: plain.sent, peer: peer.sent });
        const ready = await readyP;
        const listeningNow = log.events.find((e) => e.event === 'listening' && e.pid === ready.pid)!;
        assert.equal(listeningNow.udp, udpPort, 'the successor inherited the UDP port');
        assert.equal(listeningNow.udpPeer, peerPort, 'and the connected socket');
        await predecessorDone(log, ready, since);
        const plainAfter = plain.sent;
        const peerAfter = peer.sent;
        await plain.waitReply((r) => r.seq >= plainAfter && r.generation === g, `a reply from generation ${g}`);
        await peer.waitReply((r) => r.seq >= peerAfter && r.generation === g, `a reply from generation ${g}`);
        current = ready.pid;
      }
      plain.stop();
      peer.stop();
      await Promise.all([plain.settled(), peer.settled()]);

      for (const [c, key] of [
        [plain, 'plain'],
        [peer, 'peer'],
      ] as const) {
        assert.deepEqual(c.problems, []);
        assert.deepEqual(c.missing(), [], `${key}: datagrams lost`);
        assert.deepEqual(c.duplicated(), [], `${key}: datagrams answered twice`);
        assertSentThroughout([...boundaries.map((b) => b[key]), c.sent], key);
        // No generation answered a datagram sent after it stopped reading.
        const late: string[] = [];
        for (const [seq, gens] of c.answers) {
          const newest = boundaries.filter((b) => seq >= b[key]).at(-1);
          if (newest && gens[0]! < newest.generation) late.push(`${seq} by ${gens[0]} (after ${newest.generation - 1} stopped)`);
        }
        assert.deepEqual(late.slice(0, 10), [], `${key}: read by a predecessor after its successor's ready`);
      }
    });
  });
}
