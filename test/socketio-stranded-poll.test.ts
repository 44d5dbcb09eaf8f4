/**
 * A long-polling session with no poll pending at the cutover
 * (src/adopt/socketio-polls.ts), driven step by step with engine.io's own
 * protocol over fresh HTTP connections so the moment is not left to chance:
 * the client sends a message with an ack on its session's POST and has no
 * poll (GET) pending, so the old generation can only queue the ack. After the
 * upgrade the client's next poll reaches the successor, which must answer it
 * with what the old generation queued — the ack — and the poll after it
 * with engine.io's close packet, never both in one answer (without the
 * hand-over it answers 400 "Session ID unknown", the client reconnects
 * without the ack and sends the message again). A message
 * the client posts on the old session meanwhile is not given to the app.
 *
 * The second case freezes the old generation (fault point
 * predecessor.ready-received) while its session is still open: the poll
 * reaches the successor before the cutover and must wait there for the late
 * state (src/handover/successor.ts expects it from follow()), not get 400.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AppRunner } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

/** Resolves when `dir` holds `name` (watched, not polled). */
function appears(dir: string, name: string): Promise<void> {
  return new Promise((resolve) => {
    const watcher = fs.watch(dir, () => check());
    const check = () => {
      if (!fs.existsSync(path.join(dir, name))) return;
      watcher.close();
      resolve();
    };
    check();
  });
}

/** Resolves once `stream` carried `text` (read alongside the log's own reader: never paused here). */
function carries(stream: NodeJS.ReadableStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = '';
    const onData = (chunk: Buffer | string) => {
      seen = (seen + String(chunk)).slice(-4 * text.length);
      if (!seen.includes(text)) return;
      stream.off('data', onData);
      resolve();
    };
    stream.on('data', onData);
  });
}

/** engine.io's separator of packets in one long-polling payload. */
const SEPARATOR = '\x1e';

/** One HTTP request on a fresh connection (socket.io-client in Node polls the same way). */
function request(port: number, method: 'GET' | 'POST', query: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: `/socket.io/?EIO=4&transport=polling${query}`, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.setHeader('content-type', 'text/plain;charset=UTF-8');
    req.end(body);
  });
}

/** Opens a long-polling session and connects it to the main namespace; returns its id and `&sid=…` query. */
async function openSession(port: number): Promise<{ sid: string; s: string }> {
  const open = await request(port, 'GET', '');
  assert.equal(open.status, 200, open.body);
  const sid = (JSON.parse(open.body.slice(1)) as { sid: string }).sid;
  const s = `&sid=${encodeURIComponent(sid)}`;
  // socket.io's CONNECT to the main namespace, and its answer on the next poll.
  assert.equal((await request(port, 'POST', s, '40')).body, 'ok');
  assert.match((await request(port, 'GET', s)).body, /^40\{/);
  return { sid, s };
}

describe('socket.io long-polling: a session without a pending poll at the cutover', () => {
  const log = new EventLog();
  const apps = new AppRunner(log);
  after(() => {
    killAll(log.events.filter((e) => e.event === 'ready').map((e) => e.pid));
    apps.killAll();
  });
  /** The socket.io app under `baton run` in a fresh directory, with one connected long-polling session. */
  const appWithSession = async (prefix: string, env: NodeJS.ProcessEnv) => {
    const dir = tempDir(prefix);
    const oldPid = (await apps.run(dir, 'socketio.mjs', env).ready()).pid;
    const port = apps.portOf(oldPid);
    return { dir, oldPid, port, ...(await openSession(port)) };
  };

  it('its next poll, at the successor, gets the ack the old generation queued, and the poll after it the close', async () => {
    const env = { SIO_TRANSPORTS: 'polling' };
    const { dir, oldPid, port, s } = await appWithSession('baton-sio-stranded-', env);
    // 'msg' with ack id 1; no poll is pending, so the old generation queues the ack.
    assert.equal((await request(port, 'POST', s, '421["msg","stranded",7]')).body, 'ok');
    const processed = await log.waitFor((e) => e.event === 'msg' && e.client === 'stranded', 'msg processed');
    assert.equal(processed.pid, oldPid);

    const newPid = await apps.upgrade(dir, 'socketio.mjs', oldPid, env);
    // A message posted on the old session at the successor: not given to any app (answered once the poll took its answer).
    const order: string[] = [];
    const late = request(port, 'POST', s, '422["msg","stranded",8]').then((r) => (order.push('post'), r));
    const poll = await request(port, 'GET', s).then((r) => (order.push('poll'), r));
    assert.equal(poll.status, 200, `the successor (pid ${newPid}) answered the stranded poll: ${poll.body}`);
    // The ack alone: socket.io-client drops an ack that arrives in one payload with the close.
    assert.deepEqual(poll.body.split(SEPARATOR), [`431[{"n":7,"pid":${oldPid}}]`], 'the queued ack');
    const next = await request(port, 'GET', s).then((r) => (order.push('close'), r));
    assert.equal(next.status, 200, `the successor answered the next poll: ${next.body}`);
    assert.deepEqual(next.body.split(SEPARATOR), ['1'], 'then the close, on the next poll');
    assert.equal((await late).status, 400, 'the old session is unknown to the successor');
    // Sent first, answered after the polls: a client that got the 400 first would drop the polls' answers.
    assert.deepEqual(order, ['poll', 'close', 'post'], 'the post was refused only once the polls had their answers');
    assert.equal(log.events.filter((e) => e.event === 'msg' && e.client === 'stranded').length, 1, 'message 7 processed once, 8 never');
  });

  it('with nothing queued, a message posted on the session at the successor is refused at once, not held for a poll', async () => {
    // A client in the middle of its transport upgrade: engine.io-client polls no more until its POST
    // is answered, so holding the POST for the poll (as when an ack is queued) would only stall it.
    const env = { SIO_TRANSPORTS: 'polling' };
    const { dir, oldPid, port, s } = await appWithSession('baton-sio-idle-', env);
    // Nothing queued and no poll pending at the cutover: only the close is held for it.
    await apps.upgrade(dir, 'socketio.mjs', oldPid, env);
    const started = performance.now();
    const post = await request(port, 'POST', s, '42["msg","idle",1]');
    const ms = performance.now() - started;
    assert.equal(post.status, 400, 'the old session is unknown to the successor');
    // Held, it would wait for a poll that does not come until the stranded-post bound (1 s).
    assert.ok(ms < 500, `answered in ${Math.round(ms)} ms without a poll`);
    assert.deepEqual((await request(port, 'GET', s)).body.split(SEPARATOR), ['1'], 'a poll still gets the close');
    assert.equal(log.events.filter((e) => e.event === 'msg' && e.client === 'idle').length, 0, 'the message reached no app');
  });

  it('a poll that reaches the successor before the cutover waits there for the ack the old generation queues', async () => {
    const faults = tempDir('baton-faults-');
    const env = { SIO_TRANSPORTS: 'polling', BATON_FAULTS: faults, NODE_DEBUG: 'baton:socketio' };
    const { dir, oldPid, port, sid, s } = await appWithSession('baton-sio-early-', env);
    assert.equal((await request(port, 'POST', s, '421["msg","early",7]')).body, 'ok');
    await log.waitFor((e) => e.event === 'msg' && e.client === 'early', 'msg processed');

    // The old generation freezes once it read the successor's Ready: still open, its session
    // not closed, the ack in its buffer. The successor serves: the poll reaches it first.
    fs.writeFileSync(path.join(faults, 'predecessor.ready-received'), 'stop');
    const successor = apps.run(dir, 'socketio.mjs', env);
    await appears(faults, `predecessor.ready-received.fired-${oldPid}`);
    const waiting = carries(successor.child.stderr!, `a GET on session ${sid}`);
    let resumed = false;
    const poll = request(port, 'GET', s).then((r) => ({ ...r, afterResume: resumed }));
    await waiting;
    resumed = true;
    process.kill(oldPid, 'SIGCONT');
    const answer = await poll;
    assert.equal(answer.status, 200, `the successor answered the early poll: ${answer.body}`);
    assert.ok(answer.afterResume, 'answered only once the old generation had cut over');
    assert.deepEqual(answer.body.split(SEPARATOR), [`431[{"n":7,"pid":${oldPid}}]`], 'the ack queued in the old generation');
    assert.deepEqual((await request(port, 'GET', s)).body.split(SEPARATOR), ['1'], 'then the close');
    assert.equal(log.events.filter((e) => e.event === 'msg' && e.client === 'early').length, 1, 'message 7 processed once');
    // The handover finished as usual (and the successor's pid is known to the clean-up).
    await successor.ready();
    await log.waitFor((e) => e.event === 'drained' && e.pid === oldPid, `pid ${oldPid} drained`);
  });
});
