/**
 * Hostile or broken input on the upgrade socket, against real server processes:
 * - fds attached to frames that carry none (Hello) are closed at once: the
 *   server's fd count is flat after hundreds of them;
 * - peers sending 16 MiB frames before their Hello are refused from the header
 *   (preAuthFrameBytes): the event loop stays responsive, RSS and fds flat; a
 *   large frame after the Hello is decoded in linear time;
 * - Hello values out of range and Error frames with codes like `__proto__` are
 *   refused, naming the frame type and the field;
 * - a successor refuses a predecessor of another uid (SO_PEERCRED) before it
 *   reads a byte of it;
 * - a default socket directory taken by another user is refused with the way
 *   out, and $XDG_RUNTIME_DIR is preferred.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Defaults } from '../src/core/options.js';
import { UnixChannel } from '../src/native/index.js';
import { FramePeer } from '../src/protocol/frame-peer.js';
import { FrameDecoder, FrameType, HEADER_BYTES, MAGIC, PROTOCOL_VERSION, encodeFrame } from '../src/protocol/frames.js';
import { assertFdsFlat, converse, errorOf, fdCount, serverStats } from './helpers/hostile-peer.js';
import { freshRequests } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const NOBODY = 65534;
const MAX = Defaults.maxFrameBytes;

function hello(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { protocol: PROTOCOL_VERSION, pid: process.pid, generation: 0, name: 'fixture', node: process.version, ...overrides };
}

/** A raw header, for frames encodeFrame would never produce. */
function header(fields: { type?: number; fdCount?: number; length: number }): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32BE(MAGIC, 0);
  h.writeUInt8(PROTOCOL_VERSION, 4);
  h.writeUInt8(fields.type ?? FrameType.Hello, 5);
  h.writeUInt32BE(fields.fdCount ?? 0, 8);
  h.writeUInt32BE(fields.length, 12);
  return h;
}

async function serving(t: { after(fn: () => unknown): void }, env: NodeJS.ProcessEnv = {}) {
  const socketDir = path.join(tempDir(), 'sockets');
  const log = new EventLog();
  t.after(() => killAll(pidsOf(log)));
  const child = spawnFixture(fixture('server'), { BATON_SOCKET_DIR: socketDir, ...env }, log);
  const listening = await log.waitEvent('listening', child.pid);
  await log.waitEvent('ready', child.pid);
  return {
    log,
    pid: child.pid!,
    socketDir,
    socketPath: path.join(socketDir, 'fixture.sock'),
    origin: `http://127.0.0.1:${listening.http}`,
  };
}

describe('hostile input: fds where none belong', () => {
  it('closes every fd attached to Hello frames at once; the fd count stays flat over 300 such peers', async (t) => {
    const { log, pid, socketPath, origin } = await serving(t);
    const file = fs.openSync(path.join(tempDir(), 'payload'), 'w');
    t.after(() => fs.closeSync(file));
    const before = fdCount(pid);
    const since = log.events.length;
    const PEERS = 300;
    const body = Buffer.from(JSON.stringify(hello()));
    for (let i = 0; i < PEERS; i++) {
      // Declared (fd count 2 in the header) or not (0): a Hello carries no fd either way.
      const declared = i % 2 === 0 ? 2 : 0;
      const frame = Buffer.concat([header({ fdCount: declared, length: body.length }), body]);
      const { frames, closed } = await converse(socketPath, [{ bytes: frame, fds: [file, file] }]);
      assert.ok(closed, 'the server closed the connection');
      const error = errorOf(frames);
      assert.equal(error?.code, 'ERR_BATON_BAD_FRAME', JSON.stringify(error));
      assert.match(error!.message, /Hello frame declares \d+ fds/);
    }
    await log.waitFor(
      () => log.events.slice(since).filter((e) => e.event === 'peer-refused').length === PEERS,
      `${PEERS} refusals`,
      30_000,
    );
    await assertFdsFlat(pid, before, 'no fd kept of any refused Hello');
    assert.equal(
      log.events.slice(since).some((e) => e.event === 'upgrade-start'),
      false,
      'no Hello with fds started a handover',
    );
    assert.deepEqual(await freshRequests(origin, 2), [1, 1]);
  });
});

describe('hostile input: huge frames', () => {
  it('8 peers sending 16 MiB frames before their Hello are refused from the header; the server stays responsive, RSS and fds flat', async (t) => {
    const { pid, socketPath, origin } = await serving(t);
    await serverStats(origin); // resets the loop-delay maximum
    const fdsBefore = fdCount(pid);
    const rssBefore = (await serverStats(origin)).rss;
    const body = Buffer.alloc(MAX, 0x20);
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        converse(socketPath, [{ bytes: header({ type: FrameType.State, length: MAX }) }, { bytes: body }], 30_000),
      ),
    );
    // Meanwhile and after: HTTP answered promptly.
    const started = performance.now();
    assert.deepEqual(await freshRequests(origin, 3), [1, 1, 1]);
    const httpMs = performance.now() - started;
    for (const r of results) {
      const error = errorOf(r.frames);
      assert.equal(error?.code, 'ERR_BATON_FRAME_TOO_LARGE');
      assert.match(error!.message, /before the Hello exchange the limit is 8192 bytes \(preAuthFrameBytes\)/);
    }
    const after = await serverStats(origin);
    t.diagnostic(`rss ${rssBefore} → ${after.rss}; loop delay max ${after.loopDelayMaxMs} ms; 3 requests in ${httpMs.toFixed(0)} ms`);
    assert.ok(after.loopDelayMaxMs < 500, `event loop stalled ${after.loopDelayMaxMs} ms`);
    assert.ok(after.rss < rssBefore + 32 * 1024 * 1024, `rss grew from ${rssBefore} to ${after.rss}`);
    await assertFdsFlat(pid, fdsBefore);
  });

  it('a 16 MiB frame fed in 4 KiB reads is decoded in linear time (one copy, not one per read)', () => {
    const decoder = new FrameDecoder({ maxBytes: MAX, closeFd: () => undefined });
    const frame = encodeFrame(FrameType.State, { present: true, value: 'v'.repeat(MAX - 64) }, 0, MAX);
    const started = performance.now();
    const frames = [];
    for (let i = 0; i < frame.length; i += 4096) frames.push(...decoder.push(frame.subarray(i, i + 4096)));
    const ms = performance.now() - started;
    assert.equal(frames.length, 1);
    // Re-copying the buffer on every read moves 4096 × 8 MiB on average (32 GiB): tens of seconds.
    assert.ok(ms < 3_000, `decoding took ${ms.toFixed(0)} ms`);
  });

  it('a large bad frame after the Hello is refused naming its type and field, the event loop stays responsive', async (t) => {
    const { log, pid, socketPath, origin } = await serving(t);
    await serverStats(origin);
    const fdsBefore = fdCount(pid);
    const since = log.events.length;
    const ready = encodeFrame(FrameType.Ready, { listeners: 'x'.repeat(MAX - 32) }, 0, MAX);
    // Hello first, then (while the server sends its listeners and state) the huge Ready in 64 KiB writes.
    const writes = [{ bytes: encodeFrame(FrameType.Hello, hello(), 0, MAX) }];
    for (let i = 0; i < ready.length; i += 65536) writes.push({ bytes: ready.subarray(i, i + 65536) });
    const { frames } = await converse(socketPath, writes, 60_000);
    assert.deepEqual(
      frames.map((f) => f.type),
      [FrameType.Hello, FrameType.Listeners, FrameType.State, FrameType.Error],
    );
    const error = errorOf(frames)!;
    assert.equal(error.code, 'ERR_BATON_BAD_FRAME');
    assert.match(error.message, /sent a Ready frame with a bad payload: listeners:/);
    const failed = await log.waitFor((e) => e.event === 'upgrade-failed' && e.pid === pid, 'upgrade-failed', 30_000, since);
    assert.equal(failed.code, 'ERR_BATON_BAD_FRAME');
    const stats = await serverStats(origin);
    t.diagnostic(`loop delay max ${stats.loopDelayMaxMs} ms`);
    // The frame is decoded (one copy, one JSON.parse of 16 MiB) and refused; re-copying per read
    // stalled for seconds. The margin is for a loaded machine, where the parse alone can take 0.5 s.
    assert.ok(stats.loopDelayMaxMs < 2_500, `event loop stalled ${stats.loopDelayMaxMs} ms`);
    await assertFdsFlat(pid, fdsBefore);
    assert.deepEqual(await freshRequests(origin, 2), [1, 1]);
  });
});

describe('hostile input: payload values', () => {
  it('refuses Hello values out of range, naming the frame and the field; a good Hello still works after', async (t) => {
    const { log, pid, socketPath, origin } = await serving(t);
    const cases: [Record<string, unknown>, RegExp][] = [
      [hello({ pid: 1e308 }), /Hello frame with a bad payload: pid:/],
      [hello({ pid: -1 }), /Hello frame with a bad payload: pid:/],
      [hello({ pid: 1.5 }), /pid:/],
      [hello({ generation: -3 }), /generation:/],
      [hello({ name: '__proto__/../x' }), /name:/],
      [hello({ node: 'v'.repeat(1000) }), /node:/],
      [hello({ connections: 1e12 }), /connections:/],
      [{ ...hello(), pid: undefined }, /pid:/],
      [[1, 2, 3] as unknown as Record<string, unknown>, /\(payload\)/],
    ];
    for (const [payload, message] of cases) {
      const since = log.events.length;
      const { frames } = await converse(socketPath, [{ bytes: encodeFrame(FrameType.Hello, payload, 0, MAX) }]);
      const error = errorOf(frames);
      assert.equal(error?.code, 'ERR_BATON_BAD_FRAME', JSON.stringify(payload).slice(0, 100));
      assert.match(error!.message, message);
      const refused = await log.waitFor((e) => e.event === 'peer-refused' && e.pid === pid, 'peer-refused', 10_000, since);
      assert.match(String(refused.message), message, 'the log names the field too');
    }
    assert.equal(
      log.events.some((e) => e.event === 'upgrade-start'),
      false,
    );
    assert.deepEqual(await freshRequests(origin, 2), [1, 1]);
  });

  it('refuses Error frames whose code is __proto__, constructor or not a code; an unknown well-formed code becomes ERR_BATON_ABORTED', async () => {
    const outcomes: string[] = [];
    for (const code of ['__proto__', 'constructor', 'toString', 'ERR_FROM_THE_FUTURE']) {
      const { channel, peerFd } = UnixChannel.pair();
      const other = UnixChannel.fromFd(peerFd);
      const peer = new FramePeer(channel, { maxFrameBytes: MAX, label: 'predecessor pid 1' });
      await other.write(encodeFrame(FrameType.Error, { code, message: 'hostile' }, 0, MAX));
      const err = (await peer.receive().then(
        () => assert.fail('an Error frame is never a frame to act on'),
        (e: unknown) => e,
      )) as Error & { code?: string };
      outcomes.push(`${code}: ${err.code}: ${err.message}`);
      assert.ok(err.code !== code, 'the peer chose no code of ours');
      peer.close();
      other.close();
    }
    assert.match(outcomes[0]!, /^__proto__: ERR_BATON_BAD_FRAME: predecessor pid 1 sent an Error frame with a bad payload: code:/);
    assert.match(outcomes[1]!, /^constructor: ERR_BATON_BAD_FRAME: .*code:/);
    assert.match(outcomes[2]!, /^toString: ERR_BATON_BAD_FRAME/);
    assert.match(outcomes[3]!, /^ERR_FROM_THE_FUTURE: ERR_BATON_ABORTED: predecessor pid 1 reported ERR_FROM_THE_FUTURE: hostile/);
  });
});

describe('hostile input: the predecessor is checked too', () => {
  it('a successor refuses a predecessor of another uid (SO_PEERCRED) before reading a byte of it', async (t) => {
    const dir = tempDir();
    fs.chmodSync(dir, 0o711);
    // The fake predecessor binds in a directory of its own, which is what another user
    // controls; its socket then appears in our private directory, as a swap in a race would leave it.
    const theirs = path.join(dir, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, NOBODY, NOBODY);
    const socketDir = path.join(dir, 'sockets');
    fs.mkdirSync(socketDir, { mode: 0o700 });
    const log = new EventLog();
    t.after(() => killAll(pidsOf(log)));
    const fake = spawn(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        fixture('fake-predecessor'),
        path.join(theirs, 'fixture.sock'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    log.attach(fake.stdout!);
    t.after(() => fake.kill('SIGKILL'));
    const listening = await log.waitEvent('fake-listening', fake.pid);
    assert.equal(listening.uid, NOBODY);
    fs.renameSync(path.join(theirs, 'fixture.sock'), path.join(socketDir, 'fixture.sock'));

    const successor = spawnFixture(fixture('server'), { BATON_SOCKET_DIR: socketDir }, log);
    const failed = await log.waitEvent('start-failed', successor.pid);
    assert.equal(failed.code, 'ERR_BATON_PEER_REFUSED');
    assert.match(String(failed.message), /runs as uid 65534, which may not hand over to a server of uid 0; nothing was read from it/);
    assert.ok(String(failed.message).includes(socketDir), 'the message names the socket');
    const gone = await log.waitEvent('fake-peer-gone', fake.pid);
    assert.equal(gone.bytes, 0, 'the successor sent nothing to it');
    assert.equal(
      log.events.some((e) => e.event === 'started' && e.pid === successor.pid),
      false,
      'it never started with their listeners',
    );
  });
});

describe('hostile input: the default socket directory', () => {
  const probe = (env: NodeJS.ProcessEnv) => {
    const clean = { ...process.env };
    delete clean.XDG_RUNTIME_DIR;
    delete clean.BATON_SOCKET_DIR;
    return { ...clean, ...env };
  };

  it('refuses a <tmpdir>/baton-<uid> owned by another user, saying how to recover; prefers $XDG_RUNTIME_DIR', async (t) => {
    const tmp = tempDir();
    const taken = path.join(tmp, `baton-${process.getuid!()}`);
    fs.mkdirSync(taken, { mode: 0o700 });
    fs.chownSync(taken, NOBODY, NOBODY);
    const log = new EventLog();
    t.after(() => killAll(pidsOf(log)));
    const blocked = spawn(process.execPath, [fixture('server')], { env: probe({ TMPDIR: tmp }), stdio: ['ignore', 'pipe', 'pipe'] });
    log.attach(blocked.stdout!);
    const failed = await log.waitEvent('start-failed', blocked.pid);
    assert.equal(failed.code, 'ERR_BATON_SOCKET_DIR_INSECURE');
    const message = String(failed.message);
    assert.ok(message.includes(taken), message);
    assert.match(message, /owned by uid 65534/);
    assert.match(message, /remove it \(rm -r .*\), or use another directory: set XDG_RUNTIME_DIR, or pass socketDir/);

    // With XDG_RUNTIME_DIR set, the taken directory is not used at all; a second process finds the first there.
    const xdg = path.join(tmp, 'xdg');
    fs.mkdirSync(xdg, { mode: 0o700 });
    const env = probe({ TMPDIR: tmp, XDG_RUNTIME_DIR: xdg });
    const first = spawn(process.execPath, [fixture('server')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    log.attach(first.stdout!);
    const started = await log.waitEvent('ready', first.pid);
    assert.equal(started.origin, 'fresh');
    assert.ok(fs.lstatSync(path.join(xdg, 'baton', 'fixture.sock')).isSocket());
    const second = spawn(process.execPath, [fixture('server')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    log.attach(second.stdout!);
    const ready = await log.waitEvent('ready', second.pid);
    assert.deepEqual([ready.origin, ready.generation], ['takeover', 2]);
    await log.waitEvent('exit', first.pid);
    assert.deepEqual(fs.readdirSync(taken), [], 'nothing was put in the taken directory');
  });
});
