/**
 * Zero-code adoption: unmodified Express 4 and 5, Fastify 5, Koa and http+ws
 * apps (real packages from npm, no baton code in them) run under `baton run`,
 * and are upgraded 10 times each — by running the same command again — under
 * continuous keep-alive load: 0 failed requests, and the port the kernel
 * picked for `listen(0)` stays the same. WebSocket clients survive every
 * upgrade through migration. A Fastify app whose next version changes a route
 * switches with 0 failures.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Client } from 'undici';
import { HttpLoad } from './helpers/http-load.js';
import { EchoClients } from './helpers/ws-echo-clients.js';
import { AppRunner } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

const UPGRADES = 10;
const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  killAll(log.events.map((e) => e.pid));
  apps.killAll();
});
const run = (dir: string, app: string) => apps.run(dir, app).ready();
const upgrade = (dir: string, app: string, oldPid: number, env?: NodeJS.ProcessEnv) => apps.upgrade(dir, app, oldPid, env);
const portOf = (pid: number) => apps.portOf(pid);

describe('unmodified apps under baton run', () => {
  for (const app of ['express5.cjs', 'express4.cjs', 'fastify-v1.mjs', 'koa.mjs', 'ws-echo.mjs']) {
    test(`${app}: ${UPGRADES} upgrades under keep-alive load, 0 failed requests, same port`, async (t) => {
      const dir = tempDir('baton-adopt-');
      const first = await run(dir, app);
      assert.equal(first.generation, 1);
      const port = portOf(first.pid);
      const load = new HttpLoad(`http://127.0.0.1:${port}`, 64);
      t.after(() => load.stop());
      await load.waitForMore(100);
      let pid = first.pid;
      const pids = [pid];
      for (let i = 0; i < UPGRADES; i++) {
        pid = await upgrade(dir, app, pid);
        pids.push(pid);
        assert.equal(portOf(pid), port, 'listen(0) keeps its port across upgrades');
        await load.waitForMore(50);
      }
      const result = await load.stop();
      assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
      assert.ok(result.pids.has(pid), 'the last generation served');
      const last = log.events.find((e) => e.event === 'ready' && e.pid === pid)!;
      assert.equal(last.generation, UPGRADES + 1);
      process.kill(pid, 'SIGTERM');
      await log.waitFor((e) => e.event === 'drained' && e.pid === pid, 'the last generation stopped', 30_000);
    });
  }

  test('ws clients attached to an unmodified app survive 10 upgrades: every echo, in order, no close', async () => {
    const dir = tempDir('baton-adopt-');
    const first = await run(dir, 'ws-echo.mjs');
    const port = portOf(first.pid);
    const clients = await EchoClients.open(`ws://127.0.0.1:${port}/chat`, 50);
    let pid = first.pid;
    for (let i = 0; i < UPGRADES; i++) pid = await upgrade(dir, 'ws-echo.mjs', pid);
    await clients.finish();
    clients.close();
    process.kill(pid, 'SIGTERM');
  });

  test('a Fastify app whose next version changes a route: the switch is seen with 0 failures', async (t) => {
    const dir = tempDir('baton-adopt-');
    const first = await run(dir, 'fastify-v1.mjs');
    const port = portOf(first.pid);
    const load = new HttpLoad(`http://127.0.0.1:${port}`, 32, '/version');
    t.after(() => load.stop());
    await load.waitForMore(100);
    const pid = await upgrade(dir, 'fastify-v2.mjs', first.pid);
    await load.waitForMore(100);
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    const client = new Client(`http://127.0.0.1:${port}`);
    const version = await client.request({ path: '/version', method: 'GET' });
    assert.equal(await version.body.text(), 'v2');
    const added = await client.request({ path: '/new', method: 'GET' });
    assert.equal(added.statusCode, 200);
    await added.body.text();
    await client.close();
    process.kill(pid, 'SIGTERM');
  });
});
