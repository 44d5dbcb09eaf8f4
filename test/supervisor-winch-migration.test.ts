/**
 * A binary upgrade under `baton start` keeps long-lived connections alive:
 * on WINCH the new master's workers take the old master's workers over, so
 * WebSocket clients of an unmodified ws app see no close and lose no echo
 * through USR2 → WINCH → QUIT.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { EchoClients } from './helpers/ws-echo-clients.js';
import { appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { next, startMaster, statusOf, writeAppConfig } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

test('USR2, WINCH, QUIT under baton start: 40 WebSocket clients keep their connections and every echo', async () => {
  const dir = tempDir('baton-sup-');
  const { port, cfg } = await writeAppConfig(dir, appFile('ws-echo.mjs'), { extra: 'timeouts: { drainMs: 20000, readyMs: 20000 }' });
  const old = await startMaster(log, cfg);
  const oldWorkers = (await statusOf(dir, old.pid)).workers.map((w) => w.pid);

  const clients = await EchoClients.open(`ws://127.0.0.1:${port}/`, 40);

  let mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const newPid = (await next(log, 'new master ready', (e) => e.event === 'master-ready' && e.pid !== old.pid, mark)).pid;
  mark = log.events.length;
  process.kill(old.pid, 'SIGWINCH');
  await next(log, 'the new master absorbing', (e) => e.event === 'absorbing' && e.pid === newPid, mark);
  for (const w of oldWorkers) await waitGone(w, 20_000);
  process.kill(old.pid, 'SIGQUIT');
  await once(old.child, 'exit');

  await clients.finish();
  const s = await statusOf(dir, newPid);
  const held = s.workers.reduce((n, w) => n + (w.connections ?? 0), 0);
  assert.ok(held >= 40, `the new master's workers hold the 40 WebSockets (${held} connections)`);
  clients.close();
  process.kill(newPid, 'SIGQUIT');
  await waitGone(newPid, 20_000);
});
