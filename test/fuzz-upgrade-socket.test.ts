/**
 * Structure-aware fuzzing of the upgrade socket, against real server processes
 * over the real socket: FUZZ_FRAMES (default 10,000) generated frames per
 * protocol stage —
 * 1. before the Hello (a peer that just connected),
 * 2. after a good Hello, while the server hands over (it sent its Hello,
 *    listener fds and state, and waits for Ready; a frame that happens to be a
 *    good Ready is drawn again: it would rightly make the fuzzer the successor),
 * 3. the successor side: a serving generation taking over from a fake
 *    predecessor (Generation#absorb, the successor's frame path) gets fuzzed
 *    Listeners, State or Connections frames —
 * with mutated payloads, wrong types, wrong fd counts, truncated frames,
 * oversize lengths, bad magic or version, fds where none belong. After each
 * stage: the server never crashed, answers HTTP, holds as many fds as before,
 * and a real takeover works at the end. The seed is printed; FUZZ_SEED=<seed>
 * replays a run.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { UnixListener, type UnixChannel } from '../src/native/index.js';
import { FrameDecoder, FrameType, PROTOCOL_VERSION, encodeFrame } from '../src/protocol/frames.js';
import { checkPayload } from '../src/protocol/payloads.js';
import { Rng, fuzzFrame, fuzzSeed, type FuzzFrame } from './helpers/fuzz-frames.js';
import { Conversation, settledFdCount } from './helpers/hostile-peer.js';
import { freshRequests, getOnce } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 10_000);
const PARALLEL = 16;
const MAX = 16 * 1024 * 1024;
const SEED = fuzzSeed();

async function server(t: TestContext) {
  const socketDir = path.join(tempDir(), 'sockets');
  const log = new EventLog();
  t.after(() => killAll(pidsOf(log)));
  const env = { BATON_SOCKET_DIR: socketDir, FIXTURE_ABSORB: '1', HELLO_TIMEOUT_MS: '2000', READY_TIMEOUT_MS: '5000' };
  const child = spawnFixture(fixture('server'), env, log);
  const listening = await log.waitEvent('listening', child.pid);
  await log.waitEvent('ready', child.pid);
  const file = fs.openSync(path.join(socketDir, '..', 'an-fd'), 'w');
  t.after(() => fs.closeSync(file));
  return {
    log,
    env,
    child,
    pid: child.pid!,
    socketPath: path.join(socketDir, 'fixture.sock'),
    origin: `http://127.0.0.1:${listening.http}`,
    file,
  };
}

/** Never a frame: whatever state the fuzzed frame left the conversation in, this ends it. */
const TERMINATOR = Buffer.from('XXXX');

/**
 * Sends `frame` on `c` with fds of `file`, then waits for the server to close:
 * a refused frame closes it at once; an acceptable one is followed by bytes that
 * are never a frame, so the server closes right after it dealt with the frame.
 * A truncated frame is followed by our close.
 */
async function deliver(c: Conversation, frame: FuzzFrame, file: number): Promise<void> {
  c.send(
    frame.bytes,
    Array.from({ length: frame.fds }, () => file),
  );
  if (frame.truncated) return;
  c.send(TERMINATOR);
  await c.until(undefined);
}

/**
 * Connects to the server's upgrade socket. A fuzzed frame that was a good
 * Ready made the server drain into us; it rolls back once we left, and until
 * it published its socket again the path refuses: wait for it to serve again.
 */
async function connect(s: Awaited<ReturnType<typeof server>>): Promise<Conversation> {
  for (;;) {
    const since = s.log.events.length;
    try {
      return Conversation.connect(s.socketPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ECONNREFUSED' && code !== 'ENOENT') throw err;
      await s.log.waitFor(
        (e) => e.event === 'phase' && e.pid === s.pid && (e.args as string[])[0] === 'serving',
        `the server serving again (seed ${SEED})`,
        30_000,
        since,
      );
    }
  }
}

/** True when `frame` is a whole, valid Ready frame (the successor's go-ahead). */
function isGoodReady(frame: FuzzFrame): boolean {
  if (frame.truncated || frame.fds > 0) return false;
  try {
    const [f] = new FrameDecoder({ maxBytes: MAX, closeFd: () => undefined }).push(frame.bytes);
    if (f?.type !== FrameType.Ready) return false;
    checkPayload(f, 'the fuzzer'); // throws for a bad payload
    return true;
  } catch {
    return false;
  }
}

/** Runs `count` conversations, `parallel` at a time. */
async function inParallel(count: number, parallel: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) await one(next++);
    }),
  );
}

/** The server survived: same pid serving, HTTP answered, fds as before. */
async function assertIntact(s: Awaited<ReturnType<typeof server>>, fdsBefore: number, stage: string): Promise<void> {
  assert.equal(s.child.exitCode, null, `${stage}: the server is alive (seed ${SEED})`);
  assert.deepEqual(await freshRequests(s.origin, 2), [1, 1], `${stage}: HTTP answered`);
  assert.equal((await getOnce(s.origin)).pid, s.pid);
  const fds = await settledFdCount(s.pid, fdsBefore, 10_000);
  assert.equal(fds, fdsBefore, `${stage}: fd count after fuzzing (seed ${SEED})`);
}

describe(`fuzzing the upgrade socket (seed ${SEED}, FUZZ_SEED to replay)`, () => {
  it(`survives ${FRAMES} frames before the Hello, ${FRAMES} after it and ${FRAMES} on its successor side; a real takeover works after`, async (t) => {
    t.diagnostic(`seed ${SEED}`);
    const s = await server(t);
    const fdsBefore = await settledFdCount(s.pid, 0, 0);

    // Stage 1: a peer that just connected.
    const rng1 = new Rng(SEED);
    let started = performance.now();
    await inParallel(FRAMES, PARALLEL, async () => {
      const frame = fuzzFrame(rng1, [FrameType.Hello]);
      const c = await connect(s);
      try {
        await deliver(c, frame, s.file);
      } catch (err) {
        throw new Error(`stage 1 (${frame.what}): ${(err as Error).message} (seed ${SEED})`);
      } finally {
        c.close();
      }
    });
    t.diagnostic(`stage 1: ${FRAMES} frames in ${(performance.now() - started).toFixed(0)} ms`);
    await assertIntact(s, fdsBefore, 'stage 1');

    // Stage 2: after a good Hello, while the server waits for Ready.
    const rng2 = new Rng(SEED + 1);
    started = performance.now();
    const hello = encodeFrame(
      FrameType.Hello,
      { protocol: PROTOCOL_VERSION, pid: 4242, generation: 0, name: 'fixture', node: 'v20' },
      0,
      MAX,
    );
    for (let i = 0; i < FRAMES; i++) {
      let frame = fuzzFrame(rng2, [FrameType.Ready, FrameType.ConnectionsAck]);
      // A good Ready makes us the successor, and the server rightly drains into us and exits.
      while (isGoodReady(frame)) frame = fuzzFrame(rng2, [FrameType.Ready, FrameType.ConnectionsAck]);
      const c = await connect(s);
      try {
        c.send(hello);
        // The handover before ours may still be rolling back: then we are refused, which is an answer too.
        if (await c.until(FrameType.State)) await deliver(c, frame, s.file);
      } catch (err) {
        throw new Error(`stage 2 (${frame.what}): ${(err as Error).message} (seed ${SEED})`);
      } finally {
        c.close();
      }
    }
    t.diagnostic(`stage 2: ${FRAMES} frames in ${(performance.now() - started).toFixed(0)} ms`);
    await s.log.waitFor(
      (e) => e.event === 'phase' && e.pid === s.pid && (e.args as string[])[0] === 'serving',
      'serving',
      10_000,
      s.log.events.length - 5,
    );
    await assertIntact(s, fdsBefore, 'stage 2');

    // Stage 3: the server as a successor (absorb) of our fake predecessor.
    const rng3 = new Rng(SEED + 2);
    const fakePath = path.join(tempDir(), 'fake.sock');
    const fake = UnixListener.listen(fakePath, { mode: 0o600 });
    t.after(() => fake.close());
    const conversations: Promise<void>[] = [];
    let failure: Error | undefined;
    fake.on('connection', (channel: UnixChannel) => {
      const c = new Conversation(channel);
      const frame = pending.shift()!;
      conversations.push(
        (async () => {
          try {
            await c.until(FrameType.Hello);
            const reply = { protocol: PROTOCOL_VERSION, pid: process.pid, generation: 3, name: 'fixture', node: 'v20', connections: 1 };
            c.send(encodeFrame(FrameType.Hello, reply, 0, MAX));
            if (frame.stage !== 'listeners') c.send(encodeFrame(FrameType.Listeners, { listeners: [] }, 0, MAX));
            if (frame.stage === 'connections') {
              c.send(encodeFrame(FrameType.State, { present: false }, 0, MAX));
              if (!(await c.until(FrameType.Ready))) return;
              c.send(encodeFrame(FrameType.Draining, { connections: 1 }, 0, MAX));
            }
            await deliver(c, frame.frame, s.file);
          } catch (err) {
            failure ??= new Error(`stage 3 ${frame.stage} (${frame.frame.what}): ${(err as Error).message} (seed ${SEED})`);
          } finally {
            c.close();
          }
        })(),
      );
    });
    const stages = ['listeners', 'state', 'connections'] as const;
    const pending: { stage: (typeof stages)[number]; frame: FuzzFrame }[] = [];
    const types = { listeners: FrameType.Listeners, state: FrameType.State, connections: FrameType.Connections };
    started = performance.now();
    // Frames are drawn as the conversations come; the server absorbs in runs of 50, 8 runs at once.
    for (let i = 0; i < FRAMES; i++) {
      const stage = rng3.pick(stages);
      pending.push({ stage, frame: fuzzFrame(rng3, [types[stage]]) });
    }
    const RUN = 50;
    await inParallel(Math.ceil(FRAMES / RUN), 8, async (run) => {
      const count = Math.min(RUN, FRAMES - run * RUN);
      const res = await fetch(`${s.origin}/absorb?path=${encodeURIComponent(fakePath)}&count=${count}`);
      const { outcomes } = (await res.json()) as { outcomes: string[] };
      assert.equal(outcomes.length, count);
    });
    await Promise.all(conversations);
    if (failure) throw failure;
    t.diagnostic(`stage 3: ${FRAMES} frames in ${(performance.now() - started).toFixed(0)} ms`);
    await assertIntact(s, fdsBefore, 'stage 3');

    // And a real successor still takes over.
    const next = spawnFixture(fixture('server'), s.env, s.log);
    const ready = await s.log.waitEvent('ready', next.pid);
    assert.deepEqual([ready.origin, ready.generation], ['takeover', 2]);
    await s.log.waitEvent('exit', s.pid);
  });
});
