/**
 * Zero-code adoption beyond the web frameworks: a raw net echo server on a
 * unix socket path (connections migrate byte-exact), an HTTP/2 app, an app
 * with its own SIGTERM handler (it runs in the old generation after the
 * drain), broken apps (never listens, listens twice on one address, throws at
 * start: a clear error, and the running generation serves on), and an
 * unmodified app in the supervisor's workers, reloaded under load.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { getOnce, HttpLoad } from './helpers/http-load.js';
import { AppRunner, appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { cli, next, startMaster, statusOf, writeAppConfig } from './helpers/supervisor.js';
import { freePort } from './helpers/socket-activate.js';

const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  killAll(log.events.map((e) => e.pid));
  apps.killAll();
});
const run = (dir: string, app: string, env?: NodeJS.ProcessEnv) => apps.run(dir, app, env);
const upgrade = (dir: string, app: string, oldPid: number, env?: NodeJS.ProcessEnv) => apps.upgrade(dir, app, oldPid, env);
const portOf = (pid: number) => apps.portOf(pid);
const run2 = async (cmd: string, args: string[]) => (await promisify(execFile)(cmd, args)).stdout;

describe('zero-code adoption: other servers and failures', () => {
  test('a raw net echo server on a unix socket path: 20 streaming connections migrate byte-exact across 3 upgrades', async () => {
    const dir = tempDir('baton-adopt-');
    const socketPath = path.join(dir, 'echo.sock');
    let pid = (await run(dir, 'tcp-echo.mjs', { SOCKET_PATH: socketPath }).ready()).pid;
    const clients = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const socket = net.connect(socketPath);
        await once(socket, 'connect');
        const c = { socket, sent: 0, received: 0, mismatch: 0, closed: false, caughtUp: undefined as (() => void) | undefined };
        socket.on('data', (d: Buffer) => {
          for (const byte of d) {
            if (byte !== (c.received + i) % 251) c.mismatch++;
            c.received++;
          }
          if (c.received >= c.sent) c.caughtUp?.();
        });
        socket.on('close', () => {
          c.closed = true;
          c.caughtUp?.();
        });
        return c;
      }),
    );
    let running = true;
    const senders = clients.map(async (c, i) => {
      while (running) {
        const chunk = Buffer.alloc(512, 0);
        for (let k = 0; k < chunk.length; k++) chunk[k] = (c.sent + k + i) % 251;
        c.sent += chunk.length;
        c.socket.write(chunk);
        await new Promise((r) => setTimeout(r, 2));
      }
    });
    for (let i = 0; i < 3; i++) pid = await upgrade(dir, 'tcp-echo.mjs', pid, { SOCKET_PATH: socketPath });
    running = false;
    await Promise.all(senders);
    // Every byte sent comes back (or the connection closed, which fails below).
    await Promise.all(clients.map((c) => (c.received >= c.sent || c.closed ? undefined : new Promise<void>((r) => (c.caughtUp = r)))));
    for (const c of clients) {
      assert.equal(c.closed, false);
      assert.equal(c.mismatch, 0);
      assert.equal(c.received, c.sent);
      c.socket.destroy();
    }
    process.kill(pid, 'SIGTERM');
  });

  test('an HTTP/2 app: upgrades keep the port and the next generation answers', async () => {
    const dir = tempDir('baton-adopt-');
    let pid = (await run(dir, 'h2c.mjs').ready()).pid;
    const port = portOf(pid);
    for (let i = 0; i < 3; i++) {
      pid = await upgrade(dir, 'h2c.mjs', pid);
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const req = session.request({ ':path': '/' });
      const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
      req.resume();
      await once(req, 'end');
      session.close();
      assert.equal(headers[':status'], 200);
      assert.equal(Number(headers['x-pid']), pid);
    }
    process.kill(pid, 'SIGTERM');
  });

  test('an HTTPS app: 5 upgrades under keep-alive load (TLS connections drain with Connection: close), 0 failed requests', async (t) => {
    const dir = tempDir('baton-adopt-');
    let pid = (await run(dir, 'https.mjs').ready()).pid;
    const port = portOf(pid);
    const ca = fs.readFileSync(appFile('tls/cert.pem'));
    const load = new HttpLoad(`https://127.0.0.1:${port}`, 16, '/', { connect: { ca } });
    t.after(() => load.stop());
    await load.waitForMore(50);
    for (let i = 0; i < 5; i++) {
      pid = await upgrade(dir, 'https.mjs', pid);
      await load.waitForMore(50);
    }
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    assert.ok(result.pids.has(pid));
    process.kill(pid, 'SIGTERM');
  });

  test('baton run stays the parent of every generation: SIGUSR2 to it upgrades by takeover, 3 times under load; TERM ends it', async (t) => {
    const dir = tempDir('baton-adopt-');
    const wrapper = run(dir, 'express5.cjs');
    let pid = (await wrapper.ready()).pid;
    const load = new HttpLoad(`http://127.0.0.1:${portOf(pid)}`, 16);
    t.after(() => load.stop());
    await load.waitForMore(50);
    const parentOf = (p: number) => Number(fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    for (let i = 0; i < 3; i++) {
      const since = log.events.length;
      wrapper.child.kill('SIGUSR2');
      const ready = await log.waitFor((e) => e.event === 'ready' && e.pid !== pid, `generation ${i + 2} ready`, 30_000, since);
      assert.equal(parentOf(ready.pid), wrapper.child.pid, 'the new generation is a child of baton run');
      await log.waitFor((e) => e.event === 'drained' && e.pid === pid, `pid ${pid} drained`, 30_000, since);
      pid = ready.pid;
      await load.waitForMore(50);
      assert.equal(wrapper.child.exitCode, null, 'baton run outlives the generation it started first');
    }
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    assert.ok(result.pids.has(pid), 'the last generation served');
    wrapper.child.kill('SIGTERM');
    const [code] = (await once(wrapper.child, 'exit')) as [number];
    assert.equal(code, 0, 'baton run exits with its last generation');
    assert.throws(() => process.kill(pid, 0), 'the last generation has exited');
  });

  test("an app's own SIGTERM handler runs in the old generation after the drain", async () => {
    const dir = tempDir('baton-adopt-');
    const first = run(dir, 'own-sigterm.mjs');
    const oldPid = (await first.ready()).pid;
    const since = log.events.length;
    const newPid = await upgrade(dir, 'own-sigterm.mjs', oldPid);
    const drained = log.events.findIndex((e, i) => i >= since && e.event === 'drained' && e.pid === oldPid);
    const shutdown = await log.waitFor((e) => e.event === 'app-shutdown' && e.pid === oldPid, 'the app shutdown code', 10_000, since);
    assert.ok(log.events.indexOf(shutdown) > drained, 'after the drain');
    const [code] = (await (first.child.exitCode !== null ? [first.child.exitCode] : once(first.child, 'exit'))) as [number];
    assert.equal(code, 0);
    assert.equal((await getOnce(`http://127.0.0.1:${portOf(newPid)}`)).pid, newPid);
    process.kill(newPid, 'SIGTERM');
  });

  test('--ready explicit: the generation is ready when the app says so, not before', async () => {
    const dir = tempDir('baton-adopt-');
    const app = apps.run(dir, 'explicit-ready.mjs', { BATON_READY: 'explicit' });
    const warming = await log.waitFor((e) => e.event === 'app-warming-up' && app.stderr.length > 0, 'the app warming up', 20_000);
    process.kill(warming.pid, 'SIGHUP');
    const ready = await app.ready();
    assert.equal(ready.pid, warming.pid);
    const order = log.events.filter((e) => e.pid === warming.pid).map((e) => e.event);
    assert.ok(order.indexOf('app-declares-ready') < order.indexOf('ready'), order.join(', '));
    process.kill(ready.pid, 'SIGTERM');
  });

  test('broken apps get a clear error and the running generation serves on', async () => {
    const dir = tempDir('baton-adopt-');
    const good = (await run(dir, 'express5.cjs').ready()).pid;
    const origin = `http://127.0.0.1:${portOf(good)}`;
    const cases: [string, RegExp][] = [
      ['never-listens', /ERR_BATON_READY_TIMEOUT.*never called listen\(\) within 1000 ms/],
      ['listens-twice', /listener 'tcp-127\.0\.0\.1-\d+' is already set up in this generation/],
      ['throws', /the app failed at start/],
    ];
    for (const [mode, message] of cases) {
      const broken = run(dir, 'broken.mjs', { BROKEN: mode, PORT: String(portOf(good)), BATON_READY_TIMEOUT_MS: '1000' });
      const [code] = (await once(broken.child, 'exit')) as [number];
      assert.notEqual(code, 0, mode);
      assert.match(broken.stderr.join(''), message, mode);
      const res = await getOnce(origin);
      assert.equal(res.status, 200);
      assert.equal(res.pid, good, `${mode}: the running generation serves on`);
    }
    process.kill(good, 'SIGTERM');
  });

  test("baton start --workers 2 app.js without a config: the first worker's listener is shared; HUP and upgrade under load, 0 failed", async (t) => {
    const dir = tempDir('baton-adopt-');
    const port = await freePort();
    const child = spawn(process.execPath, [cli, 'start', '--workers', '2', '--name', 'app', '--run-dir', dir, appFile('express5.cjs')], {
      env: { ...process.env, PORT: String(port), BATON_READY_QUIET_MS: '50' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => killAll([child.pid!]));
    log.attach(child.stdout!);
    const adopted = await log.waitFor((e) => e.event === 'listener-adopted' && e.pid === child.pid, 'listener adopted', 20_000);
    assert.deepEqual(
      (adopted.listeners as { name: string; port: number; origin: string }[]).map((l) => [l.name, l.port, l.origin]),
      [[`tcp-127.0.0.1-${port}`, port, 'adopted']],
    );
    await log.waitFor((e) => e.event === 'master-ready' && e.pid === child.pid, 'master ready', 20_000);
    assert.equal((await statusOf(dir, child.pid!)).workers.filter((w) => w.state === 'ready').length, 2);
    const load = new HttpLoad(`http://127.0.0.1:${port}`, 32);
    t.after(() => load.stop());
    await load.waitForMore(100);
    let mark = log.events.length;
    process.kill(child.pid!, 'SIGHUP');
    await next(log, 'reload done', (e) => e.event === 'reload-done' && e.pid === child.pid, mark);
    await load.waitForMore(100);
    mark = log.events.length;
    const upgraded = await run2(process.execPath, [cli, 'upgrade', '--name', 'app', '--run-dir', dir]);
    assert.match(upgraded, /upgrade done/);
    await load.waitForMore(100);
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    const newPid = (await next(log, 'new master', (e) => e.event === 'master-ready' && e.pid !== child.pid, mark)).pid;
    assert.equal((await statusOf(dir, newPid)).workers.filter((w) => w.state === 'ready').length, 2);
    process.kill(newPid, 'SIGQUIT');
  });

  test('baton start --workers 2 runs an unmodified app; HUP under load: 0 failed requests', async (t) => {
    const dir = tempDir('baton-adopt-');
    const { port, cfg } = await writeAppConfig(dir, appFile('express5.cjs'), { extra: 'timeouts: { drainMs: 5000 }' });
    const master = await startMaster(log, cfg);
    t.after(() => killAll([master.pid]));
    const load = new HttpLoad(`http://127.0.0.1:${port}`, 64);
    t.after(() => load.stop());
    await load.waitForMore(200);
    const mark = log.events.length;
    process.kill(master.pid, 'SIGHUP');
    await next(log, 'reload done', (e) => e.event === 'reload-done' && e.pid === master.pid, mark);
    await load.waitForMore(200);
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    const s = await statusOf(dir, master.pid);
    assert.equal(s.workers.length, 2);
    assert.ok(s.workers.every((w) => w.origin === 'takeover' && w.state === 'ready'));
    process.kill(master.pid, 'SIGQUIT');
    await once(master.child, 'exit');
  });
});
