/**
 * Long-lived TLS connections that cannot move (issue 16): TLS keys cannot
 * leave a process, so at the cutover a `wss` WebSocket gets its close 1012
 * (Service Restart) and an HTTP/2-over-TLS session its GOAWAY promptly —
 * within a bound of the successor's ready, not at the drain timeout (30 s) —
 * and the client reconnects to the new generation. Unmodified apps under
 * `baton run`; and a library app (start(), the TLS migration kind) whose
 * HTTPS server carries a `ws` server it did not register (wss), a raw
 * protocol upgraded over TLS and idle keep-alive clients: each gets its
 * graceful close promptly, no byte of an answer lost; the contrast run
 * (closeUpgraded: false) finds them all still open and served by the old
 * generation when the first run had closed them.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import tls from 'node:tls';
import { after, test } from 'node:test';
import { WebSocket } from 'ws';
import { AppRunner, appFile } from './helpers/adopt.js';
import { EventLog, fixture, killAll, spawnFixture, tempDir } from './helpers/server-process.js';

const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  apps.killAll();
  killAll(log.events.map((e) => e.pid));
});

const ca = fs.readFileSync(appFile('tls/cert.pem'));
/** From the successor's ready to the close at the client: far below the 30 s drain timeout. */
const PROMPT_MS = 3_000;

/** `count` WebSockets to the app's wss endpoint, open. */
function openWss(port: number, count: number): Promise<WebSocket[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/`, { ca });
      await once(ws, 'open');
      return ws;
    }),
  );
}

test('wss: at the cutover each WebSocket gets close 1012 promptly, the message sent before is answered, a reconnect reaches the successor', async () => {
  const dir = tempDir('baton-wss-');
  const pid = (await apps.run(dir, 'wss-echo.mjs').ready()).pid;
  const port = apps.portOf(pid);
  const clients = await openWss(port, 5);
  for (const ws of clients) {
    ws.send('hello');
    const [reply] = (await once(ws, 'message')) as [Buffer];
    assert.equal(String(reply), `${pid} hello`);
  }
  const closes = clients.map((ws) => once(ws, 'close').then(([code]) => ({ code: code as number, at: performance.now() })));
  const since = log.events.length;
  apps.run(dir, 'wss-echo.mjs');
  const ready = await log.waitFor((e) => e.event === 'ready' && e.pid !== pid, 'successor ready', 30_000, since);
  const readyAt = performance.now();
  for (const c of await Promise.all(closes)) {
    assert.equal(c.code, 1012, 'close code Service Restart');
    assert.ok(c.at - readyAt <= PROMPT_MS, `closed ${Math.round(c.at - readyAt)} ms after the successor's ready`);
  }
  const again = new WebSocket(`wss://127.0.0.1:${port}/`, { ca });
  await once(again, 'open');
  again.send('again');
  const [reply] = (await once(again, 'message')) as [Buffer];
  assert.equal(String(reply), `${ready.pid} again`);
  again.close();
  process.kill(ready.pid, 'SIGTERM');
});

test('wss, contrast: under baton run --no-close-upgraded each WebSocket is still open and served by the old generation when the first run had closed them', async () => {
  const dir = tempDir('baton-wss-held-');
  const flags = ['--no-close-upgraded'];
  const pid = (await apps.run(dir, 'wss-echo.mjs', {}, flags).ready()).pid;
  const port = apps.portOf(pid);
  const clients = await openWss(port, 3);
  const since = log.events.length;
  apps.run(dir, 'wss-echo.mjs', {}, flags);
  const ready = await log.waitFor((e) => e.event === 'ready' && e.pid !== pid, 'successor ready', 30_000, since);
  // The bound the first test's closes met: here none closed by then.
  await new Promise((resolve) => setTimeout(resolve, PROMPT_MS));
  for (const ws of clients) {
    assert.equal(ws.readyState, WebSocket.OPEN, 'still open');
    ws.send('still');
    const [reply] = (await once(ws, 'message')) as [Buffer];
    assert.equal(String(reply), `${pid} still`);
    ws.terminate();
  }
  killAll([pid, ready.pid]);
});

test('HTTP/2 over TLS: at the cutover the session gets its GOAWAY promptly; a new session reaches the successor', async () => {
  const dir = tempDir('baton-h2s-');
  const app = appFile('h2-secure.mjs');
  const pid = (await apps.run(dir, app).ready()).pid;
  const port = apps.portOf(pid);
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca });
  const pidOf = async (s: http2.ClientHttp2Session) => {
    const req = s.request({ ':path': '/' });
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    await once(req, 'end');
    return Number(/pid (\d+)/.exec(body)?.[1]);
  };
  assert.equal(await pidOf(session), pid);
  const goaway = once(session, 'goaway').then(() => performance.now());
  const since = log.events.length;
  apps.run(dir, app);
  const ready = await log.waitFor((e) => e.event === 'ready' && e.pid !== pid, 'successor ready', 30_000, since);
  const readyAt = performance.now();
  const at = await goaway;
  assert.ok(at - readyAt <= PROMPT_MS, `GOAWAY ${Math.round(at - readyAt)} ms after the successor's ready`);
  session.close();
  const next = http2.connect(`https://127.0.0.1:${port}`, { ca });
  assert.equal(await pidOf(next), ready.pid);
  next.close();
  process.kill(ready.pid, 'SIGTERM');
});

/** A TLS connection to the library fixture, read as one growing string. */
class TlsClient {
  data = '';
  /** When the server's FIN (after its close_notify) arrived, or undefined while open. */
  endedAt: number | undefined;
  readonly ended: Promise<number>;
  #waiters: (() => void)[] = [];

  private constructor(readonly socket: tls.TLSSocket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.data += d;
      for (const w of this.#waiters.splice(0)) w();
    });
    this.ended = new Promise((resolve) =>
      socket.once('end', () => {
        this.endedAt = performance.now();
        for (const w of this.#waiters.splice(0)) w();
        resolve(this.endedAt);
      }),
    );
  }

  static async open(port: number): Promise<TlsClient> {
    const socket = tls.connect({ host: '127.0.0.1', port, ca });
    await once(socket, 'secureConnect');
    return new TlsClient(socket);
  }

  /** Waits until `done(data)` holds (rejects if the connection ends first). */
  async until(done: (data: string) => boolean, what: string): Promise<void> {
    while (!done(this.data)) {
      if (this.endedAt !== undefined) throw new Error(`connection ended before ${what}; got ${JSON.stringify(this.data.slice(-200))}`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** One HTTP/1.1 request on this connection; resolves with the response (head and body), which it takes out of `data`. */
  async get(path: string): Promise<{ head: string; body: string }> {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    let head = '';
    let length = -1;
    await this.until((d) => {
      const end = d.indexOf('\r\n\r\n');
      if (end < 0) return false;
      head = d.slice(0, end);
      length = Number(/content-length: (\d+)/i.exec(head)?.[1]);
      return d.length >= end + 4 + length;
    }, `the response to GET ${path}`);
    const start = head.length + 4;
    const body = this.data.slice(start, start + length);
    this.data = this.data.slice(start + length);
    return { head, body };
  }

  /** Upgrades this connection to the fixture's raw echo protocol. */
  async upgradeToEcho(): Promise<void> {
    this.socket.write('GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    await this.until((d) => d.includes('\r\n\r\n'), 'the 101');
    assert.match(this.data, /^HTTP\/1.1 101 /);
    this.data = this.data.slice(this.data.indexOf('\r\n\r\n') + 4);
  }

  /** One line of the echo protocol: resolves with its answer. */
  async echo(line: string): Promise<string> {
    this.socket.write(`${line}\n`);
    await this.until((d) => d.includes('\n'), `the answer to ${line}`);
    const answer = this.data.slice(0, this.data.indexOf('\n'));
    this.data = this.data.slice(answer.length + 1);
    return answer;
  }
}

const pidOfBody = (body: string) => Number(/pid (\d+)/.exec(body)?.[1]);
/** The raw client's big answer: this many bytes, far more than the socket buffers hold. */
const BIG = 16 * 1024 * 1024;

for (const closeUpgraded of [true, false]) {
  test(`library, HTTPS with an unregistered ws server, a raw upgraded protocol and idle keep-alive clients: ${
    closeUpgraded
      ? 'each gets its graceful close promptly at the cutover, no byte of an answer lost, the clients reconnect to the successor'
      : 'contrast, closeUpgraded: false: all still open and served by the old generation when the first run had closed them'
  }`, async () => {
    const env = {
      BATON_SOCKET_DIR: tempDir('baton-tls-kind-'),
      UPGRADES: '1',
      DRAIN_TIMEOUT_MS: '30000',
      // An idle keep-alive connection would end at Node's default 5 s by itself.
      KEEP_ALIVE_TIMEOUT_MS: '60000',
      ...(closeUpgraded ? {} : { CLOSE_UPGRADED: '0' }),
    };
    const since0 = log.events.length;
    spawnFixture(fixture('tls-server'), env, log);
    const first = await log.waitFor((e) => e.event === 'ready' && e.generation === 1, 'generation 1 ready', 30_000, since0);
    const port = first.port as number;

    const sockets = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca });
        await once(ws, 'open');
        ws.send('hello');
        const [reply] = (await once(ws, 'message')) as [Buffer];
        assert.equal(String(reply), `${first.pid} hello`);
        return ws;
      }),
    );
    const wsCloses = sockets.map((ws) => once(ws, 'close').then(([code]) => ({ code: code as number, at: performance.now() })));
    const raws = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const c = await TlsClient.open(port);
        await c.upgradeToEcho();
        assert.equal(await c.echo('ping'), `${first.pid} ping`);
        return c;
      }),
    );
    const idles = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const c = await TlsClient.open(port);
        const res = await c.get('/');
        assert.equal(pidOfBody(res.body), first.pid);
        assert.match(res.head, /connection: keep-alive/i);
        return c;
      }),
    );
    // A raw client whose answer is under way at the cutover: it reads nothing until the successor is ready.
    const big = await TlsClient.open(port);
    await big.upgradeToEcho();
    big.socket.pause();
    const writing = log.waitFor((e) => e.event === 'big-writing' && e.pid === first.pid, 'the big answer', 30_000, since0);
    big.socket.write(`big ${BIG}\n`);
    await writing;

    const since = log.events.length;
    spawnFixture(fixture('tls-server'), env, log);
    const next = await log.waitFor((e) => e.event === 'ready' && e.generation === 2, 'generation 2 ready', 30_000, since);
    const readyAt = performance.now();
    assert.equal(next.origin, 'takeover');
    big.socket.resume();

    if (closeUpgraded) {
      for (const c of await Promise.all(wsCloses)) {
        assert.equal(c.code, 1012, 'wss: close code Service Restart');
        assert.ok(c.at - readyAt <= PROMPT_MS, `wss closed ${Math.round(c.at - readyAt)} ms after the successor's ready`);
      }
      for (const [what, clients] of [
        ['raw upgraded', raws],
        ['idle keep-alive', idles],
      ] as const) {
        for (const c of clients) {
          const at = await c.ended;
          assert.ok(at - readyAt <= PROMPT_MS, `${what}: FIN ${Math.round(at - readyAt)} ms after the successor's ready`);
          assert.equal(c.data, '', `${what}: nothing but the close after the answers`);
        }
      }
      // The answer under way came whole before the FIN.
      await big.ended;
      assert.equal(big.data.length, BIG + '\nend\n'.length, 'every byte of the big answer');
      assert.ok(big.data.endsWith('\nend\n') && /^a+$/.test(big.data.slice(0, BIG)));
      // The old generation's drain ended with its connections: none cut, long before the drain timeout.
      const drained = await log.waitFor((e) => e.event === 'drained' && e.pid === first.pid, 'the drain', 30_000, since);
      assert.equal(drained.forced, 0, 'no connection cut');
      assert.ok((drained.durationMs as number) < 10_000, `drain took ${Math.round(drained.durationMs as number)} ms`);
      // Every client reconnects to the successor.
      const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca });
      await once(ws, 'open');
      ws.send('again');
      assert.equal(String(((await once(ws, 'message')) as [Buffer])[0]), `${next.pid} again`);
      ws.close();
      const raw = await TlsClient.open(port);
      await raw.upgradeToEcho();
      assert.equal(await raw.echo('again'), `${next.pid} again`);
      raw.socket.destroy();
      const https = await TlsClient.open(port);
      assert.equal(pidOfBody((await https.get('/')).body), next.pid);
      https.socket.destroy();
    } else {
      // The bound the first run's closes met: here nothing closed by then.
      await new Promise((resolve) => setTimeout(resolve, PROMPT_MS));
      for (const ws of sockets) {
        assert.equal(ws.readyState, WebSocket.OPEN, 'wss still open');
        ws.send('still');
        assert.equal(String(((await once(ws, 'message')) as [Buffer])[0]), `${first.pid} still`);
      }
      for (const c of raws) assert.equal(await c.echo('still'), `${first.pid} still`, 'raw upgraded still served here');
      for (const c of idles) {
        assert.equal(c.endedAt, undefined, 'idle keep-alive still open');
        // The drain answers its next request, with Connection: close.
        const res = await c.get('/');
        assert.equal(pidOfBody(res.body), first.pid);
        assert.match(res.head, /connection: close/i);
      }
      assert.ok(!log.events.slice(since).some((e) => e.event === 'drained' && e.pid === first.pid), 'the old generation still drains');
      for (const ws of sockets) ws.terminate();
      for (const c of [...raws, ...idles, big]) c.socket.destroy();
    }
    killAll([next.pid, first.pid]);
  });
}
