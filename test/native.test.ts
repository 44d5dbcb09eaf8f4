// Tests of the native fd channel (src/native): real sockets, real processes, no sleeps.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  closeFd,
  describeSocket,
  dupFd,
  growFdTable,
  loadBinding,
  MAX_FDS_PER_MESSAGE,
  systemError,
  UnixChannel,
  UnixListener,
} from '../src/native/index.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const O_CLOEXEC = 0o2000000;
/** Upper bound for tests that run child processes (a hang fails instead of stalling the run). */
const CHILD_TIMEOUT_MS = 60_000;

/** A fresh directory for this test, removed afterwards. */
function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-native-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The fd's open-file-description flags from /proc/self/fdinfo (octal). */
function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const match = /^flags:\s+([0-7]+)$/m.exec(info);
  assert.ok(match, `no flags line in fdinfo of ${fd}`);
  return parseInt(match[1]!, 8);
}

/** The fd behind a listening net.Server or a connected net.Socket (semi-internal). */
function handleFd(object: net.Server | net.Socket): number {
  const fd = (object as unknown as { _handle?: { fd?: number } })._handle?.fd;
  assert.ok(typeof fd === 'number' && fd >= 0, 'no fd on the handle');
  return fd;
}

async function listenTcp(t: TestContext, server = net.createServer()): Promise<net.Server> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return server;
}

function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}

/** Connect to 127.0.0.1:port and return everything the server sends before closing. */
async function fetchText(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  let text = '';
  socket.on('data', (chunk: string) => (text += chunk));
  await once(socket, 'end');
  socket.destroy();
  return text;
}

/** Both ends of a socketpair as channels, closed after the test. */
function channelPair(t: TestContext): [UnixChannel, UnixChannel] {
  const { channel, peerFd } = UnixChannel.pair();
  const peer = UnixChannel.fromFd(peerFd);
  t.after(() => {
    channel.close();
    peer.close();
  });
  return [channel, peer];
}

/** Collect 'data' until `bytes` bytes arrived. */
function collect(channel: UnixChannel, bytes: number): Promise<{ data: Buffer; fds: number[]; fdsPerChunk: number[] }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const fds: number[] = [];
    const fdsPerChunk: number[] = [];
    let received = 0;
    const onData = (chunk: Buffer, chunkFds: number[]): void => {
      chunks.push(chunk);
      fds.push(...chunkFds);
      if (chunkFds.length > 0) fdsPerChunk.push(chunkFds.length);
      received += chunk.length;
      if (received >= bytes) {
        channel.off('data', onData);
        channel.off('error', reject);
        resolve({ data: Buffer.concat(chunks), fds, fdsPerChunk });
      }
    };
    channel.on('data', onData);
    channel.once('error', reject);
  });
}

/** Counts event-loop turns (check phase) until stopped. */
function loopTicker(): { readonly ticks: number; stop(): void } {
  let ticks = 0;
  let timer = setImmediate(function tick() {
    ticks += 1;
    timer = setImmediate(tick);
  });
  return {
    get ticks() {
      return ticks;
    },
    stop: () => clearImmediate(timer),
  };
}

interface ChildRun {
  readonly pid: number;
  readonly lines: string[];
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Spawn a child; it is killed after the test if it is still running. */
function runChild(t: TestContext, command: string, args: string[]): ChildRun {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: string[] = [];
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
    const parts = stdout.split('\n');
    stdout = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exit = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    stderr,
  }));
  assert.ok(child.pid !== undefined);
  return { pid: child.pid, lines, exit };
}

test('pair: bytes and fds travel both ways; received fds are new, CLOEXEC and work', async (t) => {
  const [a, b] = channelPair(t);
  const dir = tempDir(t);

  // a -> b: a listening TCP socket
  const server = await listenTcp(t);
  const port = portOf(server);
  const tcpFd = handleFd(server);
  const atB = collect(b, 3);
  await a.write(Buffer.from('tcp'), [tcpFd]);
  const fromA = await atB;
  assert.equal(fromA.data.toString(), 'tcp');
  assert.equal(fromA.fds.length, 1);
  const received = fromA.fds[0]!;
  assert.notEqual(received, tcpFd);
  assert.ok(fdFlags(received) & O_CLOEXEC, 'received fd must have CLOEXEC');
  assert.deepEqual(describeSocket(received), {
    family: 'inet',
    type: 'stream',
    listening: true,
    address: '127.0.0.1',
    port,
  });
  // The original can go: the received fd keeps the socket listening, and Node adopts it.
  await new Promise((resolve) => server.close(resolve));
  const adopted = net.createServer((socket) => socket.end('adopted'));
  adopted.listen({ fd: received });
  await once(adopted, 'listening');
  t.after(() => adopted.close());
  assert.equal(await fetchText(port), 'adopted');

  // b -> a: an opened file
  const file = path.join(dir, 'payload.txt');
  fs.writeFileSync(file, 'file contents');
  const fileFd = fs.openSync(file, 'r');
  const atA = collect(a, 4);
  await b.write(Buffer.from('file'), [fileFd]);
  fs.closeSync(fileFd); // the sender keeps ownership of its fd; the message has its own copy
  const fromB = await atA;
  assert.equal(fromB.data.toString(), 'file');
  assert.equal(fromB.fds.length, 1);
  const fileCopy = fromB.fds[0]!;
  assert.ok(fdFlags(fileCopy) & O_CLOEXEC, 'received fd must have CLOEXEC');
  const buffer = Buffer.alloc(64);
  const n = fs.readSync(fileCopy, buffer, 0, buffer.length, 0);
  assert.equal(buffer.subarray(0, n).toString(), 'file contents');
  assert.throws(() => describeSocket(fileCopy), { code: 'ENOTSOCK' });
  closeFd(fileCopy);
});

test('600 fds in one write arrive complete and in order, in batches of at most 253', async (t) => {
  const [a, b] = channelPair(t);
  const dir = tempDir(t);
  const count = 600;
  const sent: number[] = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `f${i}`);
    fs.writeFileSync(file, String(i));
    sent.push(fs.openSync(file, 'r'));
  }
  t.after(() => sent.forEach((fd) => fs.closeSync(fd)));

  // 2 MiB of data with the fds: the write needs many writable events, the loop keeps turning.
  const data = randomBytes(2 * 1024 * 1024);
  const ticker = loopTicker();
  const arrived = collect(b, data.length);
  const written = a.write(data, sent);
  const ticksAtWrite = ticker.ticks;
  await written;
  const result = await arrived;
  const ticksAtEnd = ticker.ticks;
  ticker.stop();
  assert.ok(ticksAtEnd > ticksAtWrite, `the event loop must keep turning (${ticksAtWrite} -> ${ticksAtEnd})`);

  assert.ok(result.data.equals(data), 'data must arrive byte-exact');
  assert.equal(result.fds.length, count);
  assert.ok(
    result.fdsPerChunk.every((n) => n <= MAX_FDS_PER_MESSAGE),
    `batches: ${result.fdsPerChunk}`,
  );
  assert.ok(result.fdsPerChunk.length >= Math.ceil(count / MAX_FDS_PER_MESSAGE));
  const buffer = Buffer.alloc(16);
  result.fds.forEach((fd, i) => {
    const n = fs.readSync(fd, buffer, 0, buffer.length, 0);
    assert.equal(buffer.subarray(0, n).toString(), String(i), `fd #${i} out of order`);
    closeFd(fd);
  });

  // Not enough bytes to carry 3 batches.
  assert.throws(() => a.write(Buffer.alloc(2), sent), RangeError);
  assert.throws(() => a.write(Buffer.alloc(2), [-1]), TypeError);
});

test('8 MiB each way at once: EAGAIN and writable polling, byte-exact', async (t) => {
  const [a, b] = channelPair(t);
  const size = 8 * 1024 * 1024;
  const toB = randomBytes(size);
  const toA = randomBytes(size);
  const ticker = loopTicker();
  const atB = collect(b, size);
  const atA = collect(a, size);
  const writes = [a.write(toB.subarray(0, 1000)), a.write(toB.subarray(1000)), b.write(toA)];
  assert.ok(a.pendingWrites > 0 || b.pendingWrites > 0, 'the writes cannot complete synchronously');
  await Promise.all(writes);
  const [gotB, gotA] = await Promise.all([atB, atA]);
  ticker.stop();
  assert.ok(gotB.data.equals(toB));
  assert.ok(gotA.data.equals(toA));
  assert.ok(ticker.ticks > 1, `the event loop must keep turning (${ticker.ticks})`);
});

test('two processes: the child adopts a TCP listener received over a UnixListener', { timeout: CHILD_TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const socketPath = path.join(dir, 'control.sock');
  const listener = UnixListener.listen(socketPath);
  t.after(() => listener.close());

  const server = await listenTcp(t);
  const port = portOf(server);
  const child = runChild(t, process.execPath, [path.join(FIXTURES, 'native-child.js'), socketPath]);

  const [channel] = (await once(listener, 'connection')) as [UnixChannel];
  t.after(() => channel.close());
  const credentials = channel.peerCredentials();
  assert.equal(credentials.pid, child.pid);
  assert.equal(credentials.uid, process.getuid!());
  assert.equal(credentials.gid, process.getgid!());

  const ready = collect(channel, 'ready\n'.length);
  await channel.write(Buffer.from('listener'), [handleFd(server)]);
  await new Promise((resolve) => server.close(resolve)); // only the child listens now
  assert.equal((await ready).data.toString(), 'ready\n');

  assert.equal(await fetchText(port), `child ${child.pid}\n`);

  channel.close(); // the child sees 'end', closes its server and exits
  const exit = await child.exit;
  assert.equal(exit.code, 0, exit.stderr);
});

test('UnixListener: mode 0600 by default, connections, close does not unlink', async (t) => {
  const dir = tempDir(t);
  const socketPath = path.join(dir, 'a.sock');
  const listener = UnixListener.listen(socketPath);
  assert.equal(listener.path, socketPath);
  assert.equal(fs.statSync(socketPath).mode & 0o777, 0o600);
  assert.ok(fs.statSync(socketPath).isSocket());
  assert.deepEqual(describeSocket(listener.fd), { family: 'unix', type: 'stream', listening: true, path: socketPath });

  const other = UnixListener.listen(path.join(dir, 'b.sock'), { mode: 0o660, backlog: 4 });
  assert.equal(fs.statSync(other.path).mode & 0o777, 0o660);
  other.close();

  const accepted = once(listener, 'connection') as Promise<[UnixChannel]>;
  const client = UnixChannel.connect(socketPath);
  const [server] = await accepted;
  assert.equal(server.peerCredentials().pid, process.pid);
  assert.equal(client.peerCredentials().pid, process.pid);
  const got = collect(server, 5);
  await client.write(Buffer.from('hello'));
  assert.equal((await got).data.toString(), 'hello');
  client.close();
  server.close();

  const closed = once(listener, 'close');
  listener.close();
  listener.close();
  await closed;
  assert.ok(fs.existsSync(socketPath), 'close() must not unlink the socket path');
  assert.throws(() => UnixListener.listen(socketPath), { code: 'EADDRINUSE', syscall: 'listen', path: socketPath });
});

test('growFdTable: grows the table to the slots asked for (at most RLIMIT_NOFILE), leaves no fd behind', (t) => {
  const [a] = channelPair(t);
  const soft = Number(/^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))?.[1]);
  const openFds = () => fs.readdirSync('/proc/self/fd').map(Number);
  const before = openFds();
  const wanted = Math.min(4096, soft);
  assert.equal(growFdTable(a.fd, wanted), wanted);
  assert.deepEqual(openFds(), before, 'the copy in the highest slot is closed again');
  // (Where the limit is huge, the table of this test process would be too.)
  if (soft <= 1 << 16) assert.equal(growFdTable(a.fd, 2 ** 31 - 1), soft, 'capped at the soft limit');
  assert.equal(growFdTable(a.fd, 0), 0);
  assert.throws(() => growFdTable(999_999, 64), { code: 'EBADF', syscall: 'fcntl' });
});

test('epoll set: ready fds are taken out of the set; a closed set drops its registrations', (t) => {
  const native = loadBinding();
  const epfd = native.epollCreate();
  assert.ok(epfd >= 0);
  const pair = native.socketpair() as [number, number];
  t.after(() => {
    for (const fd of [...pair, epfd]) native.close(fd);
  });
  const [a, b] = pair;
  assert.equal(native.epollAdd(epfd, a), 0);
  assert.equal(native.epollAdd(epfd, a), -os.constants.errno.EEXIST);
  assert.deepEqual(native.epollTakeReady(epfd, 16), [], 'nothing to read yet');
  assert.equal(native.sendmsg(b, Buffer.from('x'), 0, 1, []), 1);
  assert.deepEqual(native.epollTakeReady(epfd, 16), [a]);
  assert.deepEqual(native.epollTakeReady(epfd, 16), [], 'taken out: level-triggered, yet reported once');
  assert.equal(native.epollDel(epfd, a), -os.constants.errno.ENOENT);
  assert.equal(native.epollAdd(epfd, a), 0);
  assert.equal(native.epollDel(epfd, a), 0);
  assert.equal(native.epollAdd(epfd, -1), -os.constants.errno.EBADF);
});

test('errors keep the shape of Node system errors', async (t) => {
  const dir = tempDir(t);
  const missing = path.join(dir, 'missing.sock');
  assert.throws(
    () => UnixChannel.connect(missing),
    (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.syscall, 'connect');
      assert.equal(error.errno, -os.constants.errno.ENOENT);
      assert.equal(error.path, missing);
      assert.equal(error.message, `connect ENOENT ${missing}`);
      return true;
    },
  );

  const stale = path.join(dir, 'stale.sock');
  UnixListener.listen(stale).close(); // bound, then closed without unlink
  assert.throws(() => UnixChannel.connect(stale), {
    code: 'ECONNREFUSED',
    syscall: 'connect',
    errno: -os.constants.errno.ECONNREFUSED,
    path: stale,
    message: `connect ECONNREFUSED ${stale}`,
  });

  assert.throws(() => UnixChannel.connect(path.join(dir, 'x'.repeat(200))), { code: 'ENAMETOOLONG' });

  const file = path.join(dir, 'regular');
  fs.writeFileSync(file, '');
  const fd = fs.openSync(file, 'r');
  t.after(() => fs.closeSync(fd));
  assert.throws(() => describeSocket(fd), { code: 'ENOTSOCK', errno: -os.constants.errno.ENOTSOCK });
  assert.throws(() => UnixChannel.fromFd(dupFd(fd)), { code: 'EPERM', syscall: 'uv_poll_start' });

  const error = systemError(-os.constants.errno.EPIPE, 'sendmsg');
  assert.equal(error.message, 'sendmsg EPIPE');
  assert.equal(error.path, undefined);

  // A write to a peer that is gone rejects with EPIPE (no SIGPIPE).
  const [a, b] = channelPair(t);
  b.close();
  await assert.rejects(a.write(Buffer.from('x')), { code: 'EPIPE', syscall: 'sendmsg' });
  // A bad fd in the message fails that write only.
  const [c, d] = channelPair(t);
  await assert.rejects(c.write(Buffer.from('x'), [999_999]), { code: 'EBADF', syscall: 'sendmsg' });
  const got = collect(d, 2);
  await c.write(Buffer.from('ok'));
  assert.equal((await got).data.toString(), 'ok');
});

test(
  'MSG_CTRUNC: a child at its fd limit reports ERR_BATON_FDS_TRUNCATED instead of crashing',
  { timeout: CHILD_TIMEOUT_MS },
  async (t) => {
    const dir = tempDir(t);
    const socketPath = path.join(dir, 'ctrunc.sock');
    const listener = UnixListener.listen(socketPath);
    t.after(() => listener.close());
    // Node itself needs about 20 fds to start (with 16 it crashes), so the limit is 32.
    const child = runChild(t, 'prlimit', ['--nofile=32:32', process.execPath, path.join(FIXTURES, 'native-ctrunc.js'), socketPath]);
    const [channel] = (await once(listener, 'connection')) as [UnixChannel];
    t.after(() => channel.close());
    assert.equal((await collect(channel, 5)).data.toString(), 'hello');

    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const fd = fs.openSync(file, 'r');
    t.after(() => fs.closeSync(fd));
    await channel.write(Buffer.from('fds!'), new Array<number>(40).fill(fd));

    const exit = await child.exit;
    assert.equal(exit.code, 0, exit.stderr);
    const events = child.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const error = events.find((event) => event.event === 'error');
    assert.ok(error, `no error reported: ${child.lines.join('\n')}`);
    assert.equal(error.code, 'ERR_BATON_FDS_TRUNCATED');
    assert.match(String(error.message), /lost/);
    assert.match(String(error.message), /RLIMIT_NOFILE/);
    const arrived = Number(/(\d+) arrived and were closed/.exec(String(error.message))?.[1]);
    assert.ok(arrived > 0 && arrived < 40, `some fds arrived before the limit: ${error.message}`);
    assert.ok(Number(error.after) <= Number(error.before), `the fds that did arrive must be closed: ${JSON.stringify(error)}`);
    assert.equal(events.at(-1)?.event, 'close');
    assert.ok(!events.some((event) => event.event === 'data'), 'truncated data must not be delivered');
  },
);

test('describeSocket: TCP listener and connection, unix, abstract, socketpair, UDP', async (t) => {
  const dir = tempDir(t);
  const accepted: net.Socket[] = [];
  const server = await listenTcp(
    t,
    net.createServer((socket) => accepted.push(socket)),
  );
  const port = portOf(server);
  assert.deepEqual(describeSocket(handleFd(server)), {
    family: 'inet',
    type: 'stream',
    listening: true,
    address: '127.0.0.1',
    port,
  });

  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  t.after(() => client.destroy());
  const clientInfo = describeSocket(handleFd(client));
  assert.equal(clientInfo.family, 'inet');
  assert.equal(clientInfo.type, 'stream');
  assert.equal(clientInfo.listening, false);
  assert.equal(clientInfo.address, '127.0.0.1');
  assert.equal(clientInfo.port, client.localPort);

  const unixPath = path.join(dir, 'u.sock');
  const unixServer = net.createServer().listen(unixPath);
  await once(unixServer, 'listening');
  t.after(() => unixServer.close());
  assert.deepEqual(describeSocket(handleFd(unixServer)), { family: 'unix', type: 'stream', listening: true, path: unixPath });

  const abstractName = `baton-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const abstractServer = net.createServer().listen(`\0${abstractName}`);
  await once(abstractServer, 'listening');
  t.after(() => abstractServer.close());
  assert.equal(describeSocket(handleFd(abstractServer)).path, `@${abstractName}`);

  const [a] = channelPair(t);
  assert.deepEqual(describeSocket(a.fd), { family: 'unix', type: 'stream', listening: false, path: '' });

  // Node has no public getter for a dgram socket's fd: find it among our own sockets.
  const udp = dgram.createSocket('udp4');
  udp.bind(0, '127.0.0.1');
  await once(udp, 'listening');
  t.after(() => udp.close());
  const udpPort = udp.address().port;
  const described = fs
    .readdirSync('/proc/self/fd')
    .map(Number)
    .flatMap((fd) => {
      try {
        return [describeSocket(fd)];
      } catch {
        return [];
      }
    });
  assert.ok(
    described.some((d) => d.family === 'inet' && d.type === 'dgram' && d.port === udpPort && !d.listening),
    'the UDP socket must be described as inet dgram',
  );

  const v6 = net.createServer();
  const v6Listening = await new Promise<boolean>((resolve) => {
    v6.once('error', () => resolve(false));
    v6.listen(0, '::1', () => resolve(true));
  });
  if (v6Listening) {
    t.after(() => v6.close());
    assert.deepEqual(describeSocket(handleFd(v6)), {
      family: 'inet6',
      type: 'stream',
      listening: true,
      address: '::1',
      port: (v6.address() as net.AddressInfo).port,
    });
  }
});

test('close() is idempotent, rejects pending writes; the peer sees end', async (t) => {
  const [a, b] = channelPair(t);
  b.pause(); // nobody reads: a large write stays pending
  const pending = a.write(Buffer.alloc(8 * 1024 * 1024));
  assert.equal(a.pendingWrites, 1);
  let closes = 0;
  a.on('close', () => (closes += 1));
  const closed = once(a, 'close');
  a.close();
  a.close();
  assert.equal(a.closed, true);
  await assert.rejects(pending, { code: 'ERR_BATON_CHANNEL_CLOSED' });
  await assert.rejects(a.write(Buffer.from('late')), { code: 'ERR_BATON_CHANNEL_CLOSED' });
  assert.throws(() => a.peerCredentials(), { code: 'ERR_BATON_CHANNEL_CLOSED' });
  await closed;
  a.close();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closes, 1);

  // b still gets what was sent before the close, then 'end'.
  let received = 0;
  b.on('data', (chunk) => (received += chunk.length));
  const ended = once(b, 'end');
  b.resume();
  await ended;
  assert.ok(received > 0 && received < 8 * 1024 * 1024, `received ${received}`);
  b.close();
});

test(
  'lifecycle: GC-collected pollers and a terminated worker with live channels do not crash',
  { timeout: CHILD_TIMEOUT_MS },
  async (t) => {
    const dir = tempDir(t);
    const child = runChild(t, process.execPath, ['--expose-gc', path.join(FIXTURES, 'native-lifecycle.js'), path.join(dir, 'w.sock')]);
    const exit = await child.exit;
    assert.equal(exit.code, 0, exit.stderr);
    assert.equal(exit.signal, null);
    assert.deepEqual(child.lines, ['ok']);
  },
);

test('peek copies what a connected socket holds without consuming it', async (t) => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [socket] = (await accepted) as [net.Socket];
  t.after(() => {
    client.destroy();
    socket.destroy();
  });
  // Read by nobody in JS: libuv stops reading, the bytes stay in the kernel.
  socket.pause();
  const handle = (socket as unknown as { _handle: { readStop(): number; readStart(): number } })._handle;
  handle.readStop();
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
  const native = loadBinding();
  const buffer = Buffer.alloc(64);
  assert.equal(native.peek(fd, buffer), -os.constants.errno.EAGAIN, 'nothing queued yet');
  const payload = randomBytes(32);
  client.write(payload);
  let n = -1;
  // Wait for the bytes with the event loop turning (no sleep): each turn lets the loopback deliver.
  while ((n = native.peek(fd, buffer)) < payload.length) await new Promise<void>((resolve) => setImmediate(resolve));
  assert.deepEqual(buffer.subarray(0, n), payload);
  assert.equal(native.peek(fd, buffer), payload.length, 'peeking again sees the same bytes');
  handle.readStart();
  socket.resume();
  const [read] = (await once(socket, 'data')) as [Buffer];
  assert.deepEqual(read, payload, 'the socket still reads every byte');
});
