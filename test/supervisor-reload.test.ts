/**
 * HUP and workers under `baton start`, with continuous keep-alive load:
 * - the app's code changed on disk: after HUP every response comes from the
 *   new code, and no request failed;
 * - HUP with a broken config: refused with file, line and key; the workers are untouched;
 * - a worker killed with SIGKILL is replaced; only requests in flight on it may fail (counted);
 * - a worker that keeps crashing is reported as a crash loop, not spun.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { Client } from 'undici';
import { getOnce } from './helpers/http-load.js';
import { freePort } from './helpers/socket-activate.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { cli, masterUnderLoad, next, quit, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** The body version served on a fresh connection. */
async function bodyOf(port: number): Promise<string> {
  const client = new Client(`http://127.0.0.1:${port}`);
  try {
    const res = await client.request({ path: '/', method: 'GET', headers: { connection: 'close' } });
    await res.body.text();
    return String(res.headers['x-body']);
  } finally {
    await client.close();
  }
}

test('HUP after the code changed: responses switch to the new code, 0 failed; a broken config is refused and changes nothing', async (t) => {
  const { dir, cfg, master, load } = await masterUnderLoad(t, log, 'workers: 2');
  assert.equal(await bodyOf(master.port), 'v1');

  writeApp(dir, 'v2');
  let mark = log.events.length;
  process.kill(master.pid, 'SIGHUP');
  await next(log, 'reload done', (e) => e.event === 'reload-done' && e.pid === master.pid, mark);
  const workers = (await statusOf(dir, master.pid)).workers;
  const serving = workers.filter((w) => w.state === 'ready');
  assert.equal(serving.length, 2);
  assert.ok(
    serving.every((w) => w.origin === 'takeover'),
    'each new worker took its slot over',
  );
  for (let i = 0; i < 10; i++) assert.equal(await bodyOf(master.port), 'v2');
  await load.waitForMore(200);

  // A broken config: refused, with its file, line and key; the workers are untouched.
  const before = (await statusOf(dir, master.pid)).workers.map((w) => w.pid).sort();
  fs.writeFileSync(cfg, `${fs.readFileSync(cfg, 'utf8')}\nworkerz: 3\n`);
  mark = log.events.length;
  process.kill(master.pid, 'SIGHUP');
  const refused = await next(log, 'reload refused', (e) => e.event === 'reload-refused' && e.pid === master.pid, mark);
  assert.equal(refused.code, 'ERR_BATON_CONFIG_INVALID');
  assert.match(String(refused.msg), /baton\.yaml:\d+:1: workerz: unknown key 'workerz'/);
  fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('\nworkerz: 3\n', '').replace('workers: 2', 'workers: two'));
  mark = log.events.length;
  process.kill(master.pid, 'SIGHUP');
  const wrongType = await next(log, 'reload refused', (e) => e.event === 'reload-refused' && e.pid === master.pid, mark);
  assert.match(String(wrongType.msg), /baton\.yaml:\d+:\d+: workers: /);
  assert.deepEqual((await statusOf(dir, master.pid)).workers.map((w) => w.pid).sort(), before);
  assert.equal(await bodyOf(master.port), 'v2');

  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  await quit(master);
});

test('a worker killed with SIGKILL is replaced; only its requests in flight may fail', async (t) => {
  const { dir, master, load } = await masterUnderLoad(t, log, 'workers: 2');
  const [victim, survivor] = (await statusOf(dir, master.pid)).workers;
  const mark = log.events.length;
  process.kill(victim!.pid, 'SIGKILL');
  const died = await next(log, 'worker died', (e) => e.event === 'worker-died' && e.workerPid === victim!.pid, mark);
  assert.equal(died.slot, victim!.slot);
  const replaced = await next(log, 'replacement ready', (e) => e.event === 'worker-ready' && e.slot === victim!.slot, mark);
  assert.notEqual(replaced.workerPid, victim!.pid);
  await load.waitForMore(500);
  const result = await load.stop();
  // At most one request per connection was in flight on the killed worker.
  assert.ok(result.failed <= 64, `${result.failed} failed requests, more than the connections in flight`);
  process.stdout.write(
    `# worker SIGKILL under load: ${result.failed} of ${result.sent} requests failed (in flight on the killed worker)\n`,
  );
  const s = await statusOf(dir, master.pid);
  assert.deepEqual(s.workers.map((w) => w.pid).sort(), [survivor!.pid, replaced.workerPid as number].sort());
  assert.equal(s.counters.restarts, 1);
  await quit(master);
});

test('a worker that crashes at start is restarted with backoff and reported as a crash loop', async (t) => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(
    dir,
    'workers: 1\nenv: { APP_MODE: crash }\nrestart: { initialDelayMs: 20, maxDelayMs: 200, crashLoopCount: 3, windowMs: 60000 }',
  );
  const child = spawn(process.execPath, [cli, 'start', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => killAll([child.pid!]));
  log.attach(child.stdout);
  const loop = await log.waitFor((e) => e.event === 'crash-loop' && e.pid === child.pid, 'crash loop reported', 20_000);
  assert.equal(loop.code, 'ERR_BATON_CRASH_LOOP');
  assert.match(String(loop.msg), /worker 0 crashed 3 times within 60000 ms/);
  const crashes = log.events.filter((e) => e.event === 'app-crash').length;
  assert.ok(crashes >= 3 && crashes <= 5, `${crashes} crashes: restarts back off instead of spinning`);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await waitGone(child.pid!, 5_000);
});

test('HUP with changed listeners: a new port is bound and served by the new workers, the old one closes; a port in use is refused', async (t) => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 2');
  const master = await startMaster(log, cfg);
  t.after(() => killAll([master.pid]));
  const oldWorkers = (await statusOf(dir, master.pid)).workers.map((w) => w.pid);

  // A port somebody else holds: the reload is refused, nothing changes.
  const squatter = net.createServer().listen(0, '127.0.0.1');
  await once(squatter, 'listening');
  t.after(() => squatter.close());
  const taken = (squatter.address() as net.AddressInfo).port;
  fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('port: 0 }', `port: ${taken} }`));
  let mark = log.events.length;
  process.kill(master.pid, 'SIGHUP');
  const refused = await next(log, 'reload refused', (e) => e.event === 'reload-refused' && e.pid === master.pid, mark);
  assert.match(String(refused.msg), /EADDRINUSE/);
  assert.deepEqual((await statusOf(dir, master.pid)).workers.map((w) => w.pid).sort(), [...oldWorkers].sort());
  assert.equal((await getOnce(`http://127.0.0.1:${master.port}`)).status, 200);

  // A free port: bound, the new workers serve it, the old port closes with the old workers.
  const free = await freePort();
  fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace(`port: ${taken} }`, `port: ${free} }`));
  mark = log.events.length;
  process.kill(master.pid, 'SIGHUP');
  await next(log, 'reload done', (e) => e.event === 'reload-done' && e.pid === master.pid, mark);
  const s = await statusOf(dir, master.pid);
  assert.deepEqual(
    s.listeners.map((l) => [l.name, l.port]),
    [['http', free]],
  );
  const res = await getOnce(`http://127.0.0.1:${free}`);
  assert.equal(res.status, 200);
  assert.ok(!oldWorkers.includes(res.pid), 'served by a new worker');
  for (const w of oldWorkers) await waitGone(w, 15_000);
  await assert.rejects(getOnce(`http://127.0.0.1:${master.port}`), /ECONNREFUSED/);
  await quit(master);
});
