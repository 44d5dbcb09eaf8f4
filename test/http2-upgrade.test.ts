/**
 * HTTP/2 survives upgrades: an independent node:http2 client (h2c, prior
 * knowledge) keeps 32 streams in flight while the server is upgraded 10 times
 * in a row by each path. The client behaves like any compliant pool: it opens
 * streams on its current session and, once that session received GOAWAY (or
 * closed), opens a new session for new streams; streams the server processed
 * must finish on the old one. The only stream a compliant client sends again is
 * one the server provably never processed: refused (REFUSED_STREAM) by a session
 * that announced GOAWAY — the streams the client sent before it read the GOAWAY
 * (RFC 9113 §8.7: "can be safely retried"). Those are counted and bounded;
 * anything else (reset, cancelled, hung, wrong status) is a failure and is not
 * retried. Proves 0 failed streams, every generation answered, and that each
 * old generation announced its drain with GOAWAY.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, describe, it } from 'node:test';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';
import { GenerationWatch } from './helpers/http-load.js';

const UPGRADES = 10;
const CONCURRENCY = 32;
/** The fixture's /big body. */
const BIG = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => i % 251));
/** Attempts per request: a refused stream is sent again at most twice. */
const MAX_ATTEMPTS = 3;

/** What the client observed. Every request is counted: ok + failed = requests. */
interface H2Result {
  requests: number;
  ok: number;
  failed: number;
  /** Streams refused unprocessed by a session that had sent GOAWAY, and sent again. */
  refused: number;
  errors: string[];
  /** Responses per generation number (x-generation header). */
  generations: Map<number, number>;
  sessions: number;
  /** 'goaway' events received, over all sessions. */
  goaways: number;
  sessionErrors: string[];
}

/**
 * A minimal HTTP/2 client pool: one current session; a session that received
 * GOAWAY or closed takes no new streams, and the next stream opens a new one.
 */
class H2Load {
  readonly #watch = new GenerationWatch();
  readonly result: H2Result = {
    requests: 0,
    ok: 0,
    failed: 0,
    refused: 0,
    errors: [],
    generations: this.#watch.counts,
    sessions: 0,
    goaways: 0,
    sessionErrors: [],
  };
  readonly #origin: string;
  readonly #all = new Set<http2.ClientHttp2Session>();
  readonly #goneAway = new WeakSet<http2.ClientHttp2Session>();
  readonly #workers: Promise<void>[] = [];
  #session: http2.ClientHttp2Session | undefined;
  #running = true;

  readonly #window: number | undefined;

  readonly #path: string;

  /**
   * `window`: the connection receive window each session sets (Node's default
   * is the protocol's 65 535). `path` '/big' asks for 256 KiB bodies, checked byte by byte.
   */
  constructor(origin: string, concurrency: number, window?: number, path = '/') {
    this.#origin = origin;
    this.#window = window;
    this.#path = path;
    for (let i = 0; i < concurrency; i++) this.#workers.push(this.#worker());
  }

  /** Resolves once a response from a generation satisfying `pred` arrived. */
  waitForGeneration(pred: (g: number) => boolean): Promise<number> {
    return this.#watch.waitFor(pred);
  }

  #current(): http2.ClientHttp2Session {
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) return s;
    const session = http2.connect(this.#origin);
    const window = this.#window;
    if (window !== undefined) session.once('connect', () => session.setLocalWindowSize(window));
    this.result.sessions++;
    this.#all.add(session);
    session.on('goaway', () => {
      this.result.goaways++;
      this.#goneAway.add(session);
      if (this.#session === session) this.#session = undefined;
    });
    session.on('error', (err: NodeJS.ErrnoException) => {
      if (this.result.sessionErrors.length < 20) this.result.sessionErrors.push(`${err.code ?? ''} ${err.message}`);
    });
    session.once('close', () => {
      this.#all.delete(session);
      if (this.#session === session) this.#session = undefined;
    });
    this.#session = session;
    return session;
  }

  /** One stream; rejects with `refused: true` when a session that sent GOAWAY refused it unprocessed. */
  #request(): Promise<number> {
    return new Promise((resolve, reject) => {
      const session = this.#current();
      const stream = session.request({ ':path': this.#path, ':method': 'GET' });
      let status = 0;
      let generation = NaN;
      let ended = false;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
        generation = Number(headers['x-generation']);
      });
      stream.on('data', (d: Buffer) => {
        if (this.#path === '/big') chunks.push(d);
      });
      stream.on('end', () => {
        ended = true;
      });
      stream.on('error', () => undefined); // judged on 'close', from rstCode
      stream.on('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM && status === 0 && this.#goneAway.has(session)) {
          reject(Object.assign(new Error('refused after GOAWAY'), { refused: true }));
        } else if (!ended) reject(new Error(`stream closed before its end (rstCode ${stream.rstCode})`));
        else if (status !== 200) reject(new Error(`status ${status}`));
        else if (this.#path === '/big' && !Buffer.concat(chunks).equals(BIG)) reject(new Error('a /big body differs'));
        else resolve(generation);
      });
      stream.end();
    });
  }

  async #worker(): Promise<void> {
    while (this.#running) {
      this.result.requests++;
      for (let attempt = 1; ; attempt++) {
        try {
          const g = await this.#request();
          this.result.ok++;
          this.#watch.record(g);
          break;
        } catch (err) {
          if ((err as { refused?: boolean }).refused && attempt < MAX_ATTEMPTS) {
            this.result.refused++;
            continue;
          }
          this.result.failed++;
          if (this.result.errors.length < 20) this.result.errors.push(`attempt ${attempt}: ${(err as Error).message}`);
          break;
        }
      }
    }
  }

  /** Cleanup after a failure: stops opening streams and destroys every session. */
  destroy(): void {
    this.#running = false;
    for (const s of this.#all) s.destroy();
  }

  /** Stops opening streams, waits for every outstanding one, closes the sessions. */
  async stop(): Promise<H2Result> {
    this.#running = false;
    await Promise.all(this.#workers);
    await Promise.all([...this.#all].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    return this.result;
  }
}

/** Rejects when `promise` does not settle within `ms`: a hung stream must fail the test, not stall it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

for (const path of ['takeover', 'exec'] as const) {
  describe(`HTTP/2 ${path} upgrades with streams in flight, drained by GOAWAY (migrate: false)`, () => {
    const log = new EventLog();
    let load: H2Load | undefined;
    after(() => {
      load?.destroy();
      killAll(pidsOf(log));
    });

    it(`upgrades ${UPGRADES} times with 0 failed streams and a GOAWAY from each old generation`, async (t) => {
      const dir = tempDir();
      const env = { BATON_SOCKET_DIR: dir, MIGRATE: '0' };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);

      load = new H2Load(`http://127.0.0.1:${listening.h2c}`, CONCURRENCY);
      await within(
        load.waitForGeneration((g) => g === 1),
        20_000,
        'a response from generation 1',
      );
      let current = first.pid!;
      const readyPids = [current];
      for (let i = 2; i <= UPGRADES + 1; i++) {
        const since = log.events.length;
        const goawaysBefore = load.result.goaways;
        const next = await upgradeFixture(log, env, path, current, i, since);
        await log.waitFor((e) => e.event === 'upgrade' && e.pid === current, `generation ${i - 1} handing over`, 60_000, since);
        await within(
          load.waitForGeneration((g) => g === i),
          20_000,
          `a response from generation ${i}`,
        );
        // The old generation exits once its sessions closed after GOAWAY (well before the drain timeout).
        await log.waitFor((e) => e.event === 'exit' && e.pid === current, `generation ${i - 1} exiting`, 20_000);
        assert.ok(load.result.goaways > goawaysBefore, `no GOAWAY received while generation ${i - 1} drained`);
        current = next.pid;
        readyPids.push(current);
      }
      const result = await within(load.stop(), 20_000, 'the outstanding streams');
      t.diagnostic(
        `${result.ok} requests answered, ${result.refused} streams refused after GOAWAY and sent again, ${result.sessions} sessions, ${result.goaways} GOAWAYs`,
      );
      assert.equal(result.failed, 0, `failed streams: ${result.errors.join('; ')}`);
      assert.deepEqual(result.sessionErrors, [], 'session errors');
      assert.ok(result.ok > UPGRADES * CONCURRENCY, `only ${result.ok} streams completed`);
      assert.equal(result.ok, result.requests, 'every request answered');
      // Only streams on the wire when the client read a GOAWAY can be refused: at most one per worker and upgrade.
      assert.ok(result.refused <= CONCURRENCY * UPGRADES, `${result.refused} streams refused in ${UPGRADES} upgrades`);
      assert.ok(result.goaways >= UPGRADES, `${result.goaways} GOAWAYs for ${UPGRADES} upgrades`);
      assert.ok(result.sessions > UPGRADES, `${result.sessions} sessions: the client should have reconnected after each GOAWAY`);
      assert.equal(new Set(readyPids).size, UPGRADES + 1, 'every generation has its own pid');
      for (let g = 1; g <= UPGRADES + 1; g++) assert.ok((result.generations.get(g) ?? 0) > 0, `no response from generation ${g}`);

      process.kill(current, 'SIGTERM');
      await log.waitEvent('exit', current);
    });
  });
}

/**
 * With migration (the default) an h2c session moves to the successor between
 * two streams: no GOAWAY, no refused stream, the client's one TCP connection
 * and session carry on through every upgrade. Three clients run at once: one
 * granting a wide window (as browsers, curl, Go and h2load do), one with
 * Node's default (kept between 32 and 64 KiB: below what a fresh session
 * assumes, so the successor's bridge keeps the real window until the client's
 * WINDOW_UPDATEs cover the difference), and one with that default fetching
 * 256 KiB bodies without pause — every body compared byte by byte. The last one
 * always has a response waiting for its WINDOW_UPDATEs, which a frozen session
 * does not read, so its session may never be quiet: it may migrate or get the
 * GOAWAY drain (within ~1 s, not the migration timeout), and loses nothing
 * either way.
 */
for (const path of ['takeover', 'exec'] as const) {
  describe(`HTTP/2 ${path} upgrades with streams in flight, sessions migrating`, () => {
    const log = new EventLog();
    const loads: H2Load[] = [];
    after(() => {
      for (const l of loads) l.destroy();
      killAll(pidsOf(log));
    });

    it(`upgrades ${UPGRADES} times: one session per client throughout, 0 GOAWAY, 0 refused, 0 failed`, async (t) => {
      const dir = tempDir();
      const env = { BATON_SOCKET_DIR: dir };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);

      const origin = `http://127.0.0.1:${listening.h2c}`;
      const clients = [
        { name: 'wide window', load: new H2Load(origin, CONCURRENCY, 1 << 20) },
        { name: 'default window', load: new H2Load(origin, CONCURRENCY / 2) },
        { name: 'default window, 256 KiB bodies', load: new H2Load(origin, 4, undefined, '/big') },
      ];
      loads.push(...clients.map((c) => c.load));
      const served = (g: number) =>
        Promise.all(
          clients.map((c) =>
            within(
              c.load.waitForGeneration((n) => n === g),
              20_000,
              `${c.name}: a response from generation ${g}`,
            ),
          ),
        );
      await served(1);
      let current = first.pid!;
      for (let i = 2; i <= UPGRADES + 1; i++) {
        const since = log.events.length;
        const next = await upgradeFixture(log, env, path, current, i, since);
        await served(i);
        // Within the quiet-point attempts (5 × 100 ms frozen, as long reading between), not the 10 s migration timeout.
        await log.waitFor((e) => e.event === 'exit' && e.pid === current, `generation ${i - 1} exiting`, 5_000);
        current = next.pid;
      }
      const results = await within(Promise.all(clients.map((c) => c.load.stop())), 20_000, 'the outstanding streams');
      clients.forEach(({ name }, k) => {
        const r = results[k]!;
        t.diagnostic(`${name}: ${r.ok} streams, ${r.sessions} session(s), ${r.goaways} GOAWAYs, ${r.refused} refused`);
        assert.equal(r.failed, 0, `${name}: failed streams: ${r.errors.join('; ')}`);
        assert.deepEqual(r.sessionErrors, [], `${name}: session errors`);
        assert.equal(r.ok, r.requests, `${name}: every request answered`);
        for (let g = 1; g <= UPGRADES + 1; g++) assert.ok((r.generations.get(g) ?? 0) > 0, `${name}: no response from generation ${g}`);
        if (k === 2) return; // migrates or drains: see above
        assert.equal(r.sessions, 1, `${name}: the client should keep its one session through every upgrade`);
        assert.equal(r.goaways, 0, `${name}: a migrating session gets no GOAWAY`);
        assert.equal(r.refused, 0, `${name}: no stream is refused when the session migrates`);
      });
      assert.ok(results[0]!.ok > UPGRADES * CONCURRENCY, `only ${results[0]!.ok} streams completed`);

      process.kill(current, 'SIGTERM');
      await log.waitEvent('exit', current);
    });
  });
}
