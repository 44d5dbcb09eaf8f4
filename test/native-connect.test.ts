// The addon's unix connect never blocks the JS thread: a listener whose backlog is full (one that
// does not accept: busy, or stopped) gives EAGAIN at once, and connectWait waits for room in the
// thread pool, with Node-shaped errors. Real sockets; the listener is a raw fd nobody accepts on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { closeFd, loadBinding, UnixChannel } from '../src/native/index.js';
import { probeUnixSocket } from '../src/native/unix-channel.js';
import { tempDir } from './helpers/temp-dirs.js';

const native = loadBinding();

/** A listening unix socket with backlog 0 (Linux queues one connection) that nobody accepts on, filled. */
function fullListener(t: TestContext): { socketPath: string; fd: number } {
  const socketPath = path.join(tempDir('baton-connect-'), 'full.sock');
  const fd = native.unixListen(socketPath, 0, 0o600);
  assert.ok(fd >= 0, `unixListen: ${fd}`);
  t.after(() => closeFd(fd));
  const queued: UnixChannel[] = [];
  t.after(() => queued.forEach((c) => c.close()));
  for (;;) {
    const found = probeUnixSocket(socketPath);
    if (found.kind !== 'running') break;
    queued.push(found.channel);
    assert.ok(queued.length < 64, 'the backlog never filled');
  }
  return { socketPath, fd };
}

const openFds = () => fs.readdirSync('/proc/self/fd').length;

test('a full backlog: connect fails at once with EAGAIN, in the shape of Node errors; probe says busy', (t) => {
  const { socketPath } = fullListener(t);
  const before = openFds();
  assert.throws(() => UnixChannel.connect(socketPath), {
    code: 'EAGAIN',
    errno: -os.constants.errno.EAGAIN,
    syscall: 'connect',
    path: socketPath,
    message: `connect EAGAIN ${socketPath}`,
  });
  assert.deepEqual(probeUnixSocket(socketPath), { kind: 'busy' });
  assert.equal(openFds(), before, 'no fd left behind');
});

test('connectWait waits off the JS thread and connects once the listener accepts', async (t) => {
  const { socketPath, fd } = fullListener(t);
  let settled = false;
  const connecting = UnixChannel.connectWait(socketPath, 60_000).finally(() => (settled = true));
  // The event loop runs on while the connect waits.
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, false, 'still waiting for room in the backlog');
  const accepted = native.accept(fd); // makes room: the waiting connect completes
  assert.ok(accepted >= 0, `accept: ${accepted}`);
  t.after(() => closeFd(accepted));
  const channel = await connecting;
  t.after(() => channel.close());
  assert.equal(channel.peerCredentials().pid, process.pid);
  const flags = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${channel.fd}`, 'utf8'))![1]!;
  assert.ok(parseInt(flags, 8) & fs.constants.O_NONBLOCK, 'the channel fd is non-blocking');
});

test('connectWait gives up with ETIMEDOUT when the backlog stays full, and the JS thread never blocked', async (t) => {
  const { socketPath } = fullListener(t);
  const before = openFds();
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  t.after(() => clearInterval(ticker));
  const started = performance.now();
  await assert.rejects(UnixChannel.connectWait(socketPath, 300), {
    code: 'ETIMEDOUT',
    errno: -os.constants.errno.ETIMEDOUT,
    syscall: 'connect',
    path: socketPath,
  });
  const waited = performance.now() - started;
  assert.ok(waited >= 290, `waited ${waited.toFixed(0)} ms for the backlog`);
  assert.ok(ticks > 0, 'timers ran on the JS thread meanwhile');
  assert.equal(openFds(), before, 'the waiting socket was closed');
});

test('connectWait reports a missing socket or a bad path at once, like connect', async () => {
  const dir = tempDir('baton-connect-');
  const missing = path.join(dir, 'missing.sock');
  await assert.rejects(UnixChannel.connectWait(missing, 1_000), { code: 'ENOENT', syscall: 'connect', path: missing });
  await assert.rejects(UnixChannel.connectWait(path.join(dir, 'x'.repeat(200)), 1_000), { code: 'ENAMETOOLONG' });
});
