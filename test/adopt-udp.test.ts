/**
 * An unmodified UDP echo app (test/apps/udp-echo.mjs: `dgram.createSocket()`,
 * `bind()`, no baton code) under `baton run`, upgraded 10 times by running it
 * again while a client sends numbered datagrams at a steady rate: every
 * datagram is answered exactly once (0 lost, 0 duplicated), by the same port
 * throughout; every datagram sent after a generation stopped reading (its
 * 'draining' line) is answered by a newer one, and after each upgrade the new
 * generation answers. The app answers 20 ms after it read a datagram, so a
 * predecessor that closed its socket at its successor's ready would lose the
 * replies to what it read last.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { AppRunner } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { sized } from './helpers/size.js';
import { UdpEchoClient, assertSentThroughout } from './helpers/udp-echo.js';

const UPGRADES = sized(10, 4);
const TICK_MS = 4;

describe(`an unmodified UDP app under baton run, ${UPGRADES} upgrades`, () => {
  const log = new EventLog();
  const apps = new AppRunner(log);
  let client: UdpEchoClient | undefined;
  after(() => {
    client?.close();
    killAll(log.events.map((e) => e.pid));
    apps.killAll();
  });

  it('answers every datagram exactly once, the newest generation after each upgrade', async () => {
    const dir = tempDir('baton-udp-');
    const first = (await apps.run(dir, 'udp-echo.mjs').ready()).pid;
    const listening = log.events.find((e) => e.event === 'app-listening' && e.pid === first)!;
    const port = listening.port as number;
    const plain = await UdpEchoClient.open('plain');
    client = plain;
    plain.start(port, TICK_MS);
    await plain.waitReply((r) => r.generation === first, 'a reply from the first generation');

    /** App pids in generation order (replies carry the pid). */
    const pids = [first];
    const boundaries: { index: number; seq: number }[] = [];
    for (let i = 1; i <= UPGRADES; i++) {
      const since = log.events.length;
      const previous = pids[i - 1]!;
      const stopped = log.waitFor((e) => e.event === 'draining' && e.pid === previous, `pid ${previous} draining`, 30_000, since);
      const upgraded = apps.upgrade(dir, 'udp-echo.mjs', previous);
      await stopped;
      // Read in the microtask after the line arrived, before the client's next tick.
      boundaries.push({ index: i, seq: plain.sent });
      const pid = await upgraded;
      pids.push(pid);
      const nowListening = log.events.find((e) => e.event === 'app-listening' && e.pid === pid)!;
      assert.equal(nowListening.port, port, 'the app bound the inherited socket');
      const after = plain.sent;
      await plain.waitReply((r) => r.seq >= after && r.generation === pid, `a reply from pid ${pid}`);
    }
    plain.stop();
    await plain.settled();

    assert.deepEqual(plain.problems, []);
    assert.deepEqual(plain.missing(), [], 'datagrams lost');
    assert.deepEqual(plain.duplicated(), [], 'datagrams answered twice');
    assertSentThroughout([...boundaries.map((b) => b.seq), plain.sent], 'plain');
    const late: string[] = [];
    for (const [seq, answeredBy] of plain.answers) {
      const index = pids.indexOf(answeredBy[0]!);
      assert.ok(index >= 0, `datagram ${seq} answered by pid ${answeredBy[0]}, not an app generation`);
      const newest = boundaries.filter((b) => seq >= b.seq).at(-1);
      if (newest && index < newest.index) late.push(`${seq} by generation ${index + 1}`);
    }
    assert.deepEqual(late.slice(0, 10), [], "read by a predecessor after its successor's ready");
  });
});
