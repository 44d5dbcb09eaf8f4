/**
 * Long-lived TLS connections that cannot move (issue 16): TLS keys cannot
 * leave a process, so at the cutover a `wss` WebSocket gets its close 1012
 * (Service Restart) and an HTTP/2-over-TLS session its GOAWAY promptly —
 * within a bound of the successor's ready, not at the drain timeout (30 s) —
 * and the client reconnects to the new generation. Unmodified apps under
 * `baton run`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import { after, test } from 'node:test';
import { WebSocket } from 'ws';
import { AppRunner, appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  apps.killAll();
  killAll(log.events.map((e) => e.pid));
});

const ca = fs.readFileSync(appFile('tls/cert.pem'));
/** From the successor's ready to the close at the client: far below the 30 s drain timeout. */
const PROMPT_MS = 3_000;

test('wss: at the cutover each WebSocket gets close 1012 promptly, the message sent before is answered, a reconnect reaches the successor', async () => {
  const dir = tempDir('baton-wss-');
  const pid = (await apps.run(dir, 'wss-echo.mjs').ready()).pid;
  const port = apps.portOf(pid);
  const clients = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/`, { ca });
      await once(ws, 'open');
      return ws;
    }),
  );
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
