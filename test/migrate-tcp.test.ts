/**
 * Raw TCP connections migrate alive with their bytes: 1,000 clients stream
 * pseudo-random data both ways through the fixture's `tcp-echo` listener across
 * 10 consecutive upgrades (takeover and exec alternating). No client ever sees
 * an error, an end or a close; every predecessor hands all 1,000 connections
 * over (none forced); at the end every connection is held by the last
 * generation, and each client gets back exactly the bytes it sent, in order.
 */
import assert from 'node:assert/strict';
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { EventLog, fixture, killAll, pidsOf, predecessorDone, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

const CLIENTS = 1000;
const UPGRADES = 10;
/** Each client writes a chunk of CHUNK_MIN..CHUNK_MAX bytes every TICK_MS (its own timer: load, not coordination). */
const TICK_MS = 25;
const CHUNK_MIN = 1024;
const CHUNK_MAX = 4096;
/** A client skips a tick while this much is still queued in its socket (backpressure). */
const MAX_QUEUED = 64 * 1024;

/** mulberry32: a small seeded PRNG, so every client's stream can be regenerated. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The byte stream every client sends: a seeded pseudo-random pool of prime
 * length, read cyclically from a per-client offset. Byte n of client c's stream
 * is POOL[(start_c + n) mod POOL_SIZE], so the echo can be checked as it comes
 * without keeping what was sent.
 */
const POOL_SIZE = 1_048_573; // prime: never aligned with chunk sizes
const POOL = (() => {
  const rand = prng(0xba70);
  const pool = Buffer.alloc(POOL_SIZE);
  for (let i = 0; i < POOL_SIZE; i++) pool[i] = Math.floor(rand() * 256);
  return pool;
})();

/** `length` bytes of the stream starting `start` bytes into the pool (cyclically). */
function streamBytes(start: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let from = start % POOL_SIZE;
  let filled = 0;
  while (filled < length) {
    const n = Math.min(length - filled, POOL_SIZE - from);
    POOL.copy(out, filled, from, from + n);
    filled += n;
    from = 0;
  }
  return out;
}

/** One independent echo client: writes its stream, verifies the echo byte by byte as it arrives. */
class EchoClient {
  readonly id: number;
  readonly socket: net.Socket;
  sent = 0;
  verified = 0;
  /** Anything a client must never see: 'error', 'end', 'close', a wrong byte. */
  readonly problems: string[] = [];
  readonly #start: number;
  readonly #rand: () => number;
  readonly #sentHash: Hash = createHash('sha256');
  readonly #echoHash: Hash = createHash('sha256');
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #waiters: { target: number; resolve: () => void }[] = [];
  #connected: Promise<void>;

  constructor(id: number, port: number) {
    this.id = id;
    const rand = prng(id * 7919 + 1);
    this.#start = Math.floor(rand() * POOL_SIZE);
    this.#rand = rand;
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.#connected = new Promise((resolve) => this.socket.once('connect', resolve));
    this.socket.on('data', (d: Buffer) => this.#onData(d));
    this.socket.on('error', (err) => this.#problem(`error ${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`));
    this.socket.on('end', () => this.#problem('end'));
    this.socket.on('close', () => this.#problem('close'));
  }

  /** Starts streaming once connected. */
  async begin(): Promise<void> {
    await this.#connected;
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  #tick(): void {
    if (this.#stopped || this.socket.writableLength > MAX_QUEUED) return;
    const size = CHUNK_MIN + Math.floor(this.#rand() * (CHUNK_MAX - CHUNK_MIN + 1));
    const chunk = streamBytes(this.#start + this.sent, size);
    this.#sentHash.update(chunk);
    this.sent += size;
    this.socket.write(chunk);
  }

  #onData(d: Buffer): void {
    if (this.verified + d.length > this.sent) {
      this.#problem(`echo of ${this.verified + d.length} bytes, only ${this.sent} sent`);
      return;
    }
    const expected = streamBytes(this.#start + this.verified, d.length);
    if (!expected.equals(d)) {
      let at = 0;
      while (at < d.length && expected[at] === d[at]) at++;
      this.#problem(`wrong echoed byte at offset ${this.verified + at}`);
      return;
    }
    this.#echoHash.update(d);
    this.verified += d.length;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.verified < w.target) return true;
      w.resolve();
      return false;
    });
  }

  #problem(what: string): void {
    if (this.problems.length < 5) this.problems.push(what);
    // Release waiters: the test fails on the problem, not on a timeout.
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  /** Resolves once `target` echoed bytes were verified (or a problem occurred). */
  until(target: number): Promise<void> {
    if (this.verified >= target || this.problems.length > 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ target, resolve }));
  }

  /** Stops writing; resolves once everything sent came back. */
  finish(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    return this.until(this.sent);
  }

  digests(): { sent: string; echoed: string } {
    return { sent: this.#sentHash.digest('hex'), echoed: this.#echoHash.digest('hex') };
  }

  close(): void {
    clearInterval(this.#timer);
    this.socket.removeAllListeners('close').removeAllListeners('end').removeAllListeners('error');
    this.socket.on('error', () => undefined);
    this.socket.destroy();
  }
}

/** Sockets held by `pid` (entries of /proc/<pid>/fd that are sockets). */
function socketsOf(pid: number): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // Closed meanwhile.
    }
  }
  return n;
}

describe('raw TCP connection migration', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  // paced: the server app leaves received bytes unconsumed in the stream's buffer, so
  // connections migrate with a head of bytes read but not yet consumed.
  for (const paced of [false, true]) {
    it(`${CLIENTS} streaming echo clients keep every byte across ${UPGRADES} upgrades (takeover and exec)${paced ? ', with unconsumed bytes' : ''}`, async () => {
      const env = { BATON_SOCKET_DIR: tempDir(), TCP_ECHO: '1', TCP_ECHO_PACED: paced ? '1' : '0' };
      const since0 = log.events.length;
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      const port = listening.tcpEcho as number;
      assert.ok(port > 0);

      const clients = Array.from({ length: CLIENTS }, (_, i) => new EchoClient(i, port));
      const problems = () => clients.filter((c) => c.problems.length > 0).map((c) => `client ${c.id}: ${c.problems.join(', ')}`);
      /** Every client gets a further `bytes` echoed (each one proves its connection is alive where it is now). */
      const allEchoMore = (bytes: number) => Promise.all(clients.map((c) => c.until(c.verified + bytes)));
      let current = first.pid!;
      const readyPids = [current];
      try {
        await Promise.all(clients.map((c) => c.begin()));
        await allEchoMore(CHUNK_MIN);
        assert.deepEqual(problems(), []);

        for (let g = 2; g <= UPGRADES + 1; g++) {
          const via = g % 2 === 0 ? 'takeover' : 'exec';
          const since = log.events.length;
          const ready = await upgradeFixture(log, env, via, current, g, since);
          // Nothing to wait for once every connection left: the predecessor finishes at once.
          const report = await predecessorDone(log, ready, since, 30_000);
          assert.equal(report.forced, 0, `generation ${g - 1} forced ${report.forced} connections`);
          assert.equal(report.migrated, CLIENTS, `generation ${g - 1} migrated ${report.migrated} of ${CLIENTS}`);
          await log.waitEvent('exit', current);
          current = ready.pid;
          readyPids.push(current);
          // Every stream goes on through the new generation.
          await allEchoMore(CHUNK_MIN);
          assert.deepEqual(problems(), [], `after upgrade to generation ${g}`);
        }

        // Every connection is now held by the last generation (the others exited).
        const held = socketsOf(current);
        assert.ok(held >= CLIENTS, `generation ${UPGRADES + 1} holds ${held} sockets, fewer than ${CLIENTS} connections`);

        await Promise.all(clients.map((c) => c.finish()));
        assert.deepEqual(problems(), []);
        let total = 0;
        for (const c of clients) {
          assert.equal(c.verified, c.sent, `client ${c.id}: ${c.sent} bytes sent, ${c.verified} echoed`);
          const d = c.digests();
          assert.equal(d.echoed, d.sent, `client ${c.id}: the echoed stream differs from the sent one`);
          total += c.sent;
        }
        assert.ok(total > CLIENTS * CHUNK_MIN * (UPGRADES + 2), `only ${total} bytes streamed`);
        assert.equal(new Set(readyPids).size, UPGRADES + 1, 'every generation has its own pid');
        const withBytes = log.events
          .slice(since0)
          .filter((e) => e.event === 'connections-out')
          .reduce((n, e) => n + (e.args as { withBytes: number }[])[0]!.withBytes, 0);
        if (paced) assert.ok(withBytes > 0, 'no connection migrated with unconsumed bytes: the head path went untested');
      } finally {
        for (const c of clients) c.close();
      }
      process.kill(current, 'SIGTERM');
      await log.waitEvent('exit', current);
    });
  }
});
