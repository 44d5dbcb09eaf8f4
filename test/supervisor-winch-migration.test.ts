/**
 * A binary upgrade under `baton start` keeps long-lived connections alive:
 * on WINCH the new master's workers take the old master's workers over, so
 * WebSocket clients of an unmodified ws app see no close and lose no echo
 * through USR2 → WINCH → QUIT.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import WebSocket from 'ws';
import { appFile } from './helpers/adopt.js';
import { freePort } from './helpers/socket-activate.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { next, startMaster, statusOf } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

test('USR2, WINCH, QUIT under baton start: 40 WebSocket clients keep their connections and every echo', async () => {
  const dir = tempDir('baton-sup-');
  const port = await freePort();
  const cfg = path.join(dir, 'baton.yaml');
  fs.writeFileSync(
    cfg,
    [
      'name: app',
      `app: ${appFile('ws-echo.mjs')}`,
      `runDir: ${dir}`,
      'workers: 2',
      'listeners:',
      `  http: { host: 127.0.0.1, port: ${port} }`,
      `env: { PORT: "${port}", BATON_READY_QUIET_MS: "50" }`,
      'timeouts: { drainMs: 20000, readyMs: 20000 }',
    ].join('\n'),
  );
  const old = await startMaster(log, cfg);
  const oldWorkers = (await statusOf(dir, old.pid)).workers.map((w) => w.pid);

  const clients = await Promise.all(
    Array.from({ length: 40 }, async (_, id) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      const c = { ws, id, sent: 0, received: 0, problems: [] as string[], caughtUp: undefined as (() => void) | undefined };
      ws.on('message', (data) => {
        if (data.toString() !== `${id}:${c.received}`) c.problems.push(`got ${data.toString()} expected ${id}:${c.received}`);
        c.received++;
        if (c.received >= c.sent) c.caughtUp?.();
      });
      const problem = (p: string) => {
        c.problems.push(p);
        c.caughtUp?.();
      };
      ws.on('close', (code) => problem(`closed ${code}`));
      ws.on('error', (err) => problem(`error ${err.message}`));
      await once(ws, 'open');
      return c;
    }),
  );
  let running = true;
  const senders = clients.map(async (c) => {
    while (running) {
      c.ws.send(`${c.id}:${c.sent++}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  });

  let mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const newPid = (await next(log, 'new master ready', (e) => e.event === 'master-ready' && e.pid !== old.pid, mark)).pid;
  mark = log.events.length;
  process.kill(old.pid, 'SIGWINCH');
  await next(log, 'the new master absorbing', (e) => e.event === 'absorbing' && e.pid === newPid, mark);
  for (const w of oldWorkers) await waitGone(w, 20_000);
  process.kill(old.pid, 'SIGQUIT');
  await once(old.child, 'exit');

  running = false;
  await Promise.all(senders);
  await Promise.all(
    clients.map((c) => (c.received >= c.sent || c.problems.length > 0 ? undefined : new Promise<void>((r) => (c.caughtUp = r)))),
  );
  for (const c of clients) {
    assert.deepEqual(c.problems, [], `client ${c.id}`);
    assert.equal(c.received, c.sent);
  }
  const s = await statusOf(dir, newPid);
  const held = s.workers.reduce((n, w) => n + (w.connections ?? 0), 0);
  assert.ok(held >= clients.length, `the new master's workers hold the ${clients.length} WebSockets (${held} connections)`);
  for (const c of clients) c.ws.terminate();
  process.kill(newPid, 'SIGQUIT');
  await waitGone(newPid, 20_000);
});
