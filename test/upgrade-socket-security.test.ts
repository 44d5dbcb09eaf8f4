/**
 * The upgrade socket is the door to a server's listeners, so it is guarded:
 * - it lives in a 0700 directory as a 0600 socket, and start() refuses a
 *   directory that is wider, owned by another uid, or a symlink;
 * - another uid cannot even reach it (EACCES), and when it could (root, or an
 *   allowed directory), the peer-credential check refuses a uid that may not
 *   take over, with an Error frame carrying ERR_BATON_PEER_REFUSED;
 * - garbage, oversized frames, other protocol versions, silence, a wrong first
 *   frame or another server's hello each get an Error frame with a stable code
 *   and a closed connection, while the server serves its load without a failure;
 * - a socket file left by a SIGKILLed server is detected as stale and replaced;
 * - of two successors racing for one predecessor exactly one wins, the other is
 *   refused with ERR_BATON_UPGRADE_IN_PROGRESS.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { describe, it, type TestContext } from 'node:test';
import { UnixChannel } from '../src/native/index.js';
import {
  FrameDecoder,
  FrameType,
  HEADER_BYTES,
  MAGIC,
  PROTOCOL_VERSION,
  encodeFrame,
  type ErrorPayload,
  type Frame,
} from '../src/protocol/frames.js';
import { Defaults } from '../src/core/options.js';
import { freshRequests, loadOn } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const CONNECTIONS = 64;
const NOBODY = 65534;
const NOGROUP = 65534;
const SOCKET_NAME = 'fixture.sock';

/** Runs `command args` as nobody:nogroup without supplementary groups (util-linux setpriv). */
function asNobody(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  return spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', command, ...args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** The server fixture run as nobody, its events going to `log` like spawnFixture's. */
function spawnFixtureAsNobody(env: NodeJS.ProcessEnv, log: EventLog): ChildProcess {
  const child = asNobody(process.execPath, [fixture('server')], { env });
  log.attach(child.stdout!);
  readline.createInterface({ input: child.stderr! }).on('line', (line) => log.output.push(`[stderr ${child.pid}] ${line}`));
  return child;
}

async function output(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/**
 * Connects to the unix socket at `socketPath` with node:net, sends `bytes` (if
 * any) and collects everything until the server closes the connection; the
 * reply is decoded as baton frames.
 */
async function rawExchange(socketPath: string, bytes?: Buffer): Promise<{ frames: Frame[]; bytes: number }> {
  const socket = net.connect(socketPath);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  // A server that closes with our bytes unread makes the kernel report ECONNRESET after its data.
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') throw err;
  });
  await once(socket, 'connect');
  if (bytes) socket.write(bytes);
  await once(socket, 'close');
  const reply = Buffer.concat(chunks);
  const decoder = new FrameDecoder({ maxBytes: 1024 * 1024, closeFd: () => undefined });
  return { frames: decoder.push(reply), bytes: reply.length };
}

/** The Error frame that must be the one and only reply. */
function onlyError(reply: { frames: Frame[] }): ErrorPayload {
  assert.equal(reply.frames.length, 1, `one frame in reply, got ${JSON.stringify(reply.frames)}`);
  assert.equal(reply.frames[0]!.type, FrameType.Error);
  return reply.frames[0]!.payload as ErrorPayload;
}

function header(fields: { version?: number; type?: number; length: number }): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32BE(MAGIC, 0);
  h.writeUInt8(fields.version ?? PROTOCOL_VERSION, 4);
  h.writeUInt8(fields.type ?? FrameType.Hello, 5);
  h.writeUInt32BE(0, 8);
  h.writeUInt32BE(fields.length, 12);
  return h;
}

function hello(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { protocol: PROTOCOL_VERSION, pid: process.pid, generation: 0, name: 'fixture', node: process.version, ...overrides };
}

/** A fixture serving generation 1 under keep-alive load; cleanup registered on `t`. */
async function servingUnderLoad(
  t: TestContext,
  env: NodeJS.ProcessEnv,
  spawnIt: (env: NodeJS.ProcessEnv, log: EventLog) => ChildProcess = (e, l) => spawnFixture(fixture('server'), e, l),
) {
  const log = new EventLog();
  t.after(() => killAll(pidsOf(log)));
  const child = spawnIt(env, log);
  const listening = await log.waitEvent('listening', child.pid);
  assert.equal((await log.waitEvent('ready', child.pid)).generation, 1);
  const origin = `http://127.0.0.1:${listening.http}`;
  const load = await loadOn(t, origin, CONNECTIONS);
  const stopLoad = () => load.stop();
  return { log, pid: child.pid!, child, origin, load, stopLoad };
}

const modeOf = (p: string) => fs.statSync(p).mode & 0o7777;

describe('upgrade socket: directory and file modes', () => {
  it('creates the directory 0700 and the socket 0600, for every generation', async (t) => {
    const dir = tempDir();
    const socketDir = path.join(dir, 'sockets');
    const { log, pid, load, stopLoad } = await servingUnderLoad(t, { BATON_SOCKET_DIR: socketDir });
    const socketPath = path.join(socketDir, SOCKET_NAME);
    const dirStat = fs.lstatSync(socketDir);
    assert.ok(dirStat.isDirectory());
    assert.equal(dirStat.mode & 0o7777, 0o700, `socket dir mode 0${(dirStat.mode & 0o7777).toString(8)}`);
    assert.equal(dirStat.uid, process.getuid!());
    const sockStat = fs.lstatSync(socketPath);
    assert.ok(sockStat.isSocket());
    assert.equal(sockStat.mode & 0o7777, 0o600, `socket mode 0${(sockStat.mode & 0o7777).toString(8)}`);
    assert.deepEqual(fs.readdirSync(socketDir), [SOCKET_NAME], 'nothing else in the directory');

    // The successor's socket replaces it with the same modes.
    const next = spawnFixture(fixture('server'), { BATON_SOCKET_DIR: socketDir }, log);
    assert.equal((await log.waitEvent('ready', next.pid)).generation, 2);
    await log.waitEvent('exit', pid);
    const sock2 = fs.lstatSync(socketPath);
    assert.notEqual(sock2.ino, sockStat.ino, "the path now names the successor's socket");
    assert.equal(sock2.mode & 0o7777, 0o600);
    assert.equal(modeOf(socketDir), 0o700);
    assert.deepEqual(fs.readdirSync(socketDir), [SOCKET_NAME]);
    const result = await stopLoad();
    assert.equal(result.failed, 0, result.errors.join('; '));
    assert.ok(load.result.generations.get(2)! > 0);
  });

  for (const [what, prepare, message] of [
    ['of mode 0755', (d: string) => fs.mkdirSync(d, { mode: 0o755 }), /has mode 0755; it must be 0700/],
    ['of mode 0710 (group search)', (d: string) => (fs.mkdirSync(d), fs.chmodSync(d, 0o710)), /has mode 0710/],
    [
      'owned by another uid',
      (d: string) => (fs.mkdirSync(d, { mode: 0o700 }), fs.chownSync(d, NOBODY, NOGROUP)),
      /owned by uid 65534, not by this process's uid 0/,
    ],
    [
      'that is a symlink to a private directory',
      (d: string) => {
        fs.mkdirSync(`${d}-real`, { mode: 0o700 });
        fs.symlinkSync(`${d}-real`, d);
      },
      /is not a directory/,
    ],
  ] as const) {
    it(`refuses a socket directory ${what}: start-failed ERR_BATON_SOCKET_DIR_INSECURE`, async (t) => {
      const dir = tempDir();
      const socketDir = path.join(dir, 'sockets');
      prepare(socketDir);
      const log = new EventLog();
      t.after(() => killAll(pidsOf(log)));
      const child = spawnFixture(fixture('server'), { BATON_SOCKET_DIR: socketDir }, log);
      const [code] = (await once(child, 'exit')) as [number];
      const failed = log.events.find((e) => e.event === 'start-failed');
      assert.ok(failed, `start-failed reported; output: ${log.output.join('\n')}`);
      assert.equal(failed.code, 'ERR_BATON_SOCKET_DIR_INSECURE');
      assert.match(String(failed.message), message);
      assert.ok(String(failed.message).includes(socketDir), 'the message names the directory');
      assert.equal(code, 2);
      assert.equal(
        log.events.some((e) => e.event === 'listening'),
        false,
        'no listener was bound',
      );
      assert.equal(fs.existsSync(path.join(socketDir, SOCKET_NAME)), false, 'no socket was created there');
    });
  }
});

describe('upgrade socket: other users', () => {
  it('another uid cannot reach the socket (EACCES from the 0700 directory); the server serves on', async (t) => {
    const dir = tempDir();
    // Let nobody traverse our temp dir, so the only obstacle is baton's own directory.
    fs.chmodSync(dir, 0o711);
    const socketDir = path.join(dir, 'sockets');
    const { log, origin, stopLoad } = await servingUnderLoad(t, { BATON_SOCKET_DIR: socketDir });
    const socketPath = path.join(socketDir, SOCKET_NAME);
    const probe = `
      const fs = require('node:fs'), net = require('node:net');
      const [dir, sock] = process.argv.slice(1);
      const out = { uid: process.getuid() };
      try { fs.statSync(dir); out.dir = 'ok'; } catch (e) { out.dir = e.code; }
      try { fs.statSync(sock); out.stat = 'ok'; } catch (e) { out.stat = e.code; }
      const s = net.connect(sock);
      s.on('connect', () => { out.connect = 'connected'; s.end('x'); console.log(JSON.stringify(out)); });
      s.on('error', (e) => { out.connect = e.code; console.log(JSON.stringify(out)); });`;

    const refused = await output(asNobody(process.execPath, ['-e', probe, socketDir, socketPath]));
    assert.equal(refused.code, 0, refused.stderr);
    assert.deepEqual(JSON.parse(refused.stdout), { uid: NOBODY, dir: 'ok', stat: 'EACCES', connect: 'EACCES' });

    // Control: the same probe as this (allowed) uid does connect, so the refusal above is the permissions'.
    const since = log.events.length;
    const control = await output(spawn(process.execPath, ['-e', probe, socketDir, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
    assert.deepEqual(JSON.parse(control.stdout), { uid: 0, dir: 'ok', stat: 'ok', connect: 'connected' });
    // The control sent one byte that is not a frame: refused as garbage (a silent probe would not be reported).
    const gone = await log.waitFor((e) => e.event === 'peer-refused', 'peer-refused for the control', 10_000, since);
    assert.equal(gone.code, 'ERR_BATON_BAD_FRAME');
    assert.equal(log.events.filter((e) => e.event === 'peer-refused').length, 1, 'only the control reached the server');

    assert.deepEqual(await freshRequests(origin, 3), [1, 1, 1]);
    const result = await stopLoad();
    assert.equal(result.failed, 0, result.errors.join('; '));
    assert.ok(result.ok > CONNECTIONS);
  });

  it('the peer-credential check refuses a uid that may not take over (root, with allowRoot false); the server serves on', async (t) => {
    const dir = tempDir();
    fs.chmodSync(dir, 0o711);
    const socketDir = path.join(dir, 'sockets');
    fs.mkdirSync(socketDir, { mode: 0o700 });
    fs.chownSync(socketDir, NOBODY, NOGROUP);
    const env = { BATON_SOCKET_DIR: socketDir, ALLOW_ROOT: '0' };
    const { log, pid, origin, load, stopLoad } = await servingUnderLoad(t, env, spawnFixtureAsNobody);
    const socketPath = path.join(socketDir, SOCKET_NAME);
    assert.equal(fs.statSync(socketPath).uid, NOBODY, 'the server runs as nobody');

    // Root passes the file permissions (CAP_DAC_OVERRIDE) but not baton's own check.
    const since = log.events.length;
    const channel = UnixChannel.connect(socketPath);
    t.after(() => channel.close());
    const decoder = new FrameDecoder({ maxBytes: Defaults.maxFrameBytes, closeFd: () => undefined });
    const frames: Frame[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      channel.on('data', (chunk, fds) => frames.push(...decoder.push(chunk, fds)));
      channel.on('end', resolve);
      // It closed with our hello unread: the kernel reports ECONNRESET after its data.
      channel.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve() : reject(err)));
    });
    await channel.write(encodeFrame(FrameType.Hello, hello(), 0, Defaults.maxFrameBytes)).catch(() => undefined);
    await ended;
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.type, FrameType.Error);
    const error = frames[0]!.payload as ErrorPayload;
    assert.equal(error.code, 'ERR_BATON_PEER_REFUSED');
    assert.match(error.message, new RegExp(`peer pid ${process.pid} has uid 0, which may not take over a server of uid ${NOBODY}`));
    const refused = await log.waitFor((e) => e.event === 'peer-refused' && e.pid === pid, 'peer-refused', 10_000, since);
    assert.equal(refused.code, 'ERR_BATON_PEER_REFUSED');
    assert.match(String(refused.message), /uid 0/);
    assert.equal(
      log.events.slice(since).some((e) => e.event === 'phase' || e.event === 'upgrade-start'),
      false,
      'a refused peer starts no handover',
    );
    assert.deepEqual(await freshRequests(origin, 3), [1, 1, 1]);

    // Its own uid may take over: the check tells uids apart rather than refusing everyone.
    const next = spawnFixtureAsNobody(env, log);
    const ready = await log.waitEvent('ready', next.pid);
    assert.deepEqual([ready.generation, ready.origin], [2, 'takeover']);
    await load.waitForGeneration((g) => g === 2);
    await log.waitEvent('exit', pid);
    const result = await stopLoad();
    assert.equal(result.failed, 0, result.errors.join('; '));
    process.kill(next.pid!, 'SIGTERM');
    await log.waitEvent('exit', next.pid);
  });
});

describe('upgrade socket: hostile bytes', () => {
  it('answers garbage, oversized, foreign-version, silent and out-of-order peers with an Error frame; 0 failed requests', async (t) => {
    const dir = tempDir();
    const socketDir = path.join(dir, 'sockets');
    const { log, pid, origin, load, stopLoad } = await servingUnderLoad(t, { BATON_SOCKET_DIR: socketDir, HELLO_TIMEOUT_MS: '1000' });
    const socketPath = path.join(socketDir, SOCKET_NAME);
    let garbage = randomBytes(64);
    while (garbage[0] === 0x42) garbage = randomBytes(64);
    const helloBody = Buffer.from(JSON.stringify(hello()));

    const cases: [string, Buffer | undefined, string, RegExp][] = [
      ['random bytes', garbage, 'ERR_BATON_BAD_FRAME', /not a baton frame/],
      ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'ERR_BATON_BAD_FRAME', /not a baton frame/],
      [
        'a header announcing more than maxFrameBytes',
        header({ length: Defaults.maxFrameBytes + 1 }),
        'ERR_BATON_FRAME_TOO_LARGE',
        /limit is 16777216 bytes/,
      ],
      [
        'a protocol version 2 frame',
        Buffer.concat([header({ version: 2, length: helloBody.length }), helloBody]),
        'ERR_BATON_PROTOCOL_VERSION',
        /version 2/,
      ],
      [
        'a version 1 frame whose hello says protocol 2',
        encodeFrame(FrameType.Hello, hello({ protocol: 2 }), 0, 1 << 20),
        'ERR_BATON_PROTOCOL_VERSION',
        /protocol 2/,
      ],
      [
        'a hello for another server',
        encodeFrame(FrameType.Hello, hello({ name: 'other' }), 0, 1 << 20),
        'ERR_BATON_PEER_REFUSED',
        /'other'/,
      ],
      [
        'a Ready frame before any hello',
        encodeFrame(FrameType.Ready, { listeners: 1 }, 0, 1 << 20),
        'ERR_BATON_UNEXPECTED_FRAME',
        /Ready frame where a Hello frame/,
      ],
      ['silence (no hello within helloTimeoutMs)', undefined, 'ERR_BATON_HELLO_TIMEOUT', /1000 ms/],
    ];
    for (const [what, bytes, code, message] of cases) {
      const since = log.events.length;
      const error = onlyError(await rawExchange(socketPath, bytes));
      assert.equal(error.code, code, `${what}: ${error.message}`);
      assert.match(error.message, message, what);
      const refused = await log.waitFor((e) => e.event === 'peer-refused' && e.pid === pid, `peer-refused for ${what}`, 10_000, since);
      assert.equal(refused.code, code, what);
      t.diagnostic(`${what}: ${code}: ${error.message}`);
    }
    assert.equal(log.events.filter((e) => e.event === 'peer-refused').length, cases.length);
    assert.deepEqual(
      log.events
        .filter((e) => e.event === 'phase' || e.event === 'upgrade-start' || e.event === 'upgrade-failed')
        .map((e) => e.event + String((e.args as string[] | undefined)?.[0] ?? '')),
      ['phaseserving'],
      'no hostile peer started a handover',
    );
    assert.deepEqual(await freshRequests(origin, 3), [1, 1, 1]);

    // And a real successor still takes over.
    const next = spawnFixture(fixture('server'), { BATON_SOCKET_DIR: socketDir }, log);
    assert.equal((await log.waitEvent('ready', next.pid)).generation, 2);
    await load.waitForGeneration((g) => g === 2);
    const result = await stopLoad();
    assert.equal(result.failed, 0, result.errors.join('; '));
    assert.ok(result.ok > CONNECTIONS);
  });
});

describe('upgrade socket: stale socket and racing successors', () => {
  it('replaces the socket file of a SIGKILLed server, then hands over normally', async (t) => {
    const dir = tempDir();
    const socketDir = path.join(dir, 'sockets');
    const env = { BATON_SOCKET_DIR: socketDir };
    const log = new EventLog();
    t.after(() => killAll(pidsOf(log)));
    const socketPath = path.join(socketDir, SOCKET_NAME);

    const dead = spawnFixture(fixture('server'), env, log);
    await log.waitEvent('ready', dead.pid);
    dead.kill('SIGKILL');
    await once(dead, 'exit');
    assert.ok(fs.lstatSync(socketPath).isSocket(), 'the dead server left its socket file');
    const probe = net.connect(socketPath);
    const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED', 'nobody listens there');

    const fresh = spawnFixture(fixture('server'), env, log);
    const started = await log.waitEvent('started', fresh.pid);
    assert.deepEqual([started.origin, started.generation], ['fresh', 1]);
    const listening = await log.waitEvent('listening', fresh.pid);
    await log.waitEvent('ready', fresh.pid);
    // The path reaches a live server again (inode numbers may be reused, so ask it).
    const since = log.events.length;
    const live = net.connect(socketPath);
    await once(live, 'connect');
    live.end('x'); // not a frame: the server refuses it, which proves it is there
    const hungUp = await log.waitFor(
      (e) => e.event === 'peer-refused' && e.pid === fresh.pid,
      'the new server saw our probe',
      10_000,
      since,
    );
    assert.equal(hungUp.code, 'ERR_BATON_BAD_FRAME');
    const origin = `http://127.0.0.1:${listening.http}`;
    assert.deepEqual(await freshRequests(origin, 2), [1, 1]);

    const load = await loadOn(t, origin, CONNECTIONS);
    const stopLoad = () => load.stop();
    const next = spawnFixture(fixture('server'), env, log);
    const ready = await log.waitEvent('ready', next.pid);
    assert.deepEqual([ready.origin, ready.generation], ['takeover', 2]);
    await load.waitForGeneration((g) => g === 2);
    await log.waitEvent('exit', fresh.pid);
    const result = await stopLoad();
    assert.equal(result.failed, 0, result.errors.join('; '));
    process.kill(next.pid!, 'SIGTERM');
    await log.waitEvent('exit', next.pid);
  });

  it('two successors at once: exactly one takes over, the other gets ERR_BATON_UPGRADE_IN_PROGRESS', async (t) => {
    const dir = tempDir();
    const socketDir = path.join(dir, 'sockets');
    const env = { BATON_SOCKET_DIR: socketDir };
    const { log, pid, stopLoad, load } = await servingUnderLoad(t, env);

    // Both hold before ready(): whichever said hello first keeps the predecessor
    // handing over until we release it, so the other one surely finds it busy.
    const since = log.events.length;
    const racers = [0, 1].map(() => spawnFixture(fixture('server'), { ...env, FIXTURE_MODE: 'hold' }, log));
    const racerPids = racers.map((c) => c.pid!);
    const isRacer = (p: number) => racerPids.includes(p);
    const [holding, loserFailed] = await Promise.all([
      log.waitFor((e) => e.event === 'holding' && isRacer(e.pid), 'a racer holding', 30_000, since),
      log.waitFor((e) => e.event === 'start-failed' && isRacer(e.pid), 'a racer refused', 30_000, since),
    ]);
    assert.notEqual(holding.pid, loserFailed.pid);
    assert.equal(loserFailed.code, 'ERR_BATON_UPGRADE_IN_PROGRESS');
    assert.match(String(loserFailed.message), /handing-over/);
    const loser = racers.find((c) => c.pid === loserFailed.pid)!;
    const [loserCode] = loser.exitCode !== null ? [loser.exitCode] : ((await once(loser, 'exit')) as [number]);
    assert.equal(loserCode, 2);
    const refused = await log.waitFor((e) => e.event === 'peer-refused' && e.pid === pid, 'peer-refused', 10_000, since);
    assert.equal(refused.code, 'ERR_BATON_UPGRADE_IN_PROGRESS');
    assert.match(String(refused.message), new RegExp(`successor pid ${loserFailed.pid} refused`));

    process.kill(holding.pid, 'SIGHUP');
    const ready = await log.waitEvent('ready', holding.pid);
    assert.deepEqual([ready.generation, ready.origin], [2, 'takeover']);
    const upgrade = await log.waitFor((e) => e.event === 'upgrade' && e.pid === pid, 'upgrade', 30_000, since);
    assert.equal((upgrade.args as { successorPid: number }[])[0]!.successorPid, holding.pid);
    await load.waitForGeneration((g) => g === 2);
    await log.waitEvent('exit', pid);
    const result = await stopLoad();
    assert.equal(result.failed, 0, result.errors.join('; '));
    assert.equal(log.events.filter((e) => e.event === 'ready' && e.generation === 2).length, 1, 'exactly one generation 2');
    assert.equal(log.events.filter((e) => e.event === 'started' && isRacer(e.pid)).length, 1, 'the loser never started');
    assert.deepEqual(
      log.events.filter((e) => e.event === 'phase' && e.pid === pid).map((e) => (e.args as string[])[0]),
      ['serving', 'handing-over', 'draining', 'exited'],
    );
    process.kill(holding.pid, 'SIGTERM');
    await log.waitEvent('exit', holding.pid);
  });
});
