/**
 * Overlapping reloads under `baton start`: each reload replaces the slot's
 * worker while the replaced ones still drain a request in flight. With
 * `maxGenerations: 3`, two draining workers and a serving one are the most:
 * the next `baton reload` is refused (exit 1, ERR_BATON_TOO_MANY_GENERATIONS
 * naming the slot's workers) and they all serve on; once the oldest one's
 * request is answered and it exits, the same reload goes through. Every held
 * response completes, and the keep-alive load sees no failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { cli, next, quit, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** GET `path` on a connection of its own; resolves with the body. */
function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

test('baton reload above maxGenerations is refused while older workers drain, and succeeds once one exited', async (t) => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 1\nmaxGenerations: 3\ntimeouts: { drainMs: 60000, readyMs: 15000, killGraceMs: 1000 }');
  const master = await startMaster(log, cfg);
  t.after(() => killAll([master.pid]));
  const load = new HttpLoad(`http://127.0.0.1:${master.port}`, 8);
  t.after(() => load.stop());
  await load.waitForMore(100);

  /** Holds a request on the serving worker, then reloads to `body`: that worker drains with it. */
  const holdAndReload = async (body: string) => {
    const serving = (await statusOf(dir, master.pid)).workers.find((w) => w.state === 'ready')!.pid;
    let mark = log.events.length;
    const held = get(master.port, '/hold');
    await next(log, 'the held request', (e) => e.event === 'holding-request' && e.pid === serving, mark);
    writeApp(dir, body);
    mark = log.events.length;
    const done = await run(process.execPath, [cli, 'reload', '-c', cfg]);
    assert.match(done.stdout, /reload done/);
    await next(log, `a worker of ${body}`, (e) => e.event === 'app-ready' && e.body === body, mark);
    return { held, pid: serving };
  };
  const first = await holdAndReload('v2');
  const second = await holdAndReload('v3');

  // Serving v3, draining v1 and v2: a fourth would be one too many.
  writeApp(dir, 'v4');
  const refusedAt = log.events.length;
  const refused = await run(process.execPath, [cli, 'reload', '-c', cfg]).then(
    () => assert.fail('the reload went through'),
    (err: { code: number; stderr: string }) => err,
  );
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /reload refused: .*more than maxGenerations \(3\).*slot 0: worker pid \d+ \(serving\), worker pid \d+ \(draining\), worker pid \d+ \(draining\)/,
  );
  // The master's own record names the code.
  const record = await next(log, 'the refusal record', (e) => e.event === 'reload-refused' && e.pid === master.pid, refusedAt);
  assert.equal(record.code, 'ERR_BATON_TOO_MANY_GENERATIONS');
  const status = await statusOf(dir, master.pid);
  assert.equal(status.reload.last?.result, 'refused');
  assert.ok(status.workers.some((w) => w.pid === first.pid) && status.workers.some((w) => w.pid === second.pid));
  await load.waitForMore(50); // v3 serves on

  // The oldest request is answered: its worker exits, and the reload goes through.
  process.kill(first.pid, 'SIGWINCH');
  assert.match(await first.held, /^held v1 pid/);
  await waitGone(first.pid, 30_000);
  const mark = log.events.length;
  const done = await run(process.execPath, [cli, 'reload', '-c', cfg]);
  assert.match(done.stdout, /reload done/);
  await next(log, 'a worker of v4', (e) => e.event === 'app-ready' && e.body === 'v4', mark);
  await load.waitForMore(50);
  process.kill(second.pid, 'SIGWINCH');
  assert.match(await second.held, /^held v2 pid/);

  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.slice(0, 5).join('; ')}`);
  await quit(master);
});
