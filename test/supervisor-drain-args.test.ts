/**
 * `baton start app.js -- args` passes the arguments to the app, and a worker
 * drains for the configured `timeouts.drainMs` (not a fixed 30 s): an old
 * worker holding a request that never ends reports its drain (the request
 * cut at drainMs) and exits long before the master's SIGKILL at
 * drainMs + killGraceMs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { next, quit, startMaster, writeConfig } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

const library = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** An app on baton's library: GET /hang never answers; says its argv when ready and its drain report. */
function writeHangingApp(dir: string): void {
  fs.writeFileSync(
    path.join(dir, 'app.mjs'),
    `import http from 'node:http';
import { start } from ${JSON.stringify(library)};
const emit = (event, data = {}) => process.stdout.write(JSON.stringify({ event, pid: process.pid, ...data }) + '\\n');
const g = await start({ name: 'app' });
const server = http.createServer((req, res) => {
  res.setHeader('x-pid', String(process.pid));
  if (req.url === '/hang') return emit('app-hanging');
  res.end('ok');
});
await g.listen('http', { host: '127.0.0.1', port: 0 }, server);
await g.ready();
emit('app-ready', { generation: g.number, args: process.argv.slice(2) });
g.on('drained', (r) => emit('app-drained', { ...r }));
await g.exited();
process.exit(0);
`,
  );
}

describe('baton start: app arguments and the drain timeout', () => {
  test('baton start -c cfg app.mjs -- --flag value: the workers get the arguments', async () => {
    const dir = tempDir('baton-sup-');
    writeHangingApp(dir);
    const cfg = writeConfig(dir, 'args: [from-the-file]');
    const master = await startMaster(log, cfg, [path.join(dir, 'app.mjs'), '--', '--flag', 'value']);
    // The master runs once its worker said ready over IPC; the app's own line on the pipe can come after.
    const ready = await log.waitFor(
      (e) => e.event === 'app-ready' && e.generation !== undefined,
      'the app ready with its arguments',
      10_000,
    );
    assert.deepEqual(ready.args, ['--flag', 'value']);
    await quit(master);
  });

  test('timeouts.drainMs 1500: an old worker with a request in flight reports its drain at ~1.5 s, before the SIGKILL at 21.5 s', async () => {
    const dir = tempDir('baton-sup-');
    writeHangingApp(dir);
    const cfg = writeConfig(dir, '');
    fs.writeFileSync(
      cfg,
      fs.readFileSync(cfg, 'utf8').replace(/timeouts: .*/, 'timeouts: { drainMs: 1500, readyMs: 15000, killGraceMs: 20000 }'),
    );
    const master = await startMaster(log, cfg);
    const client = new Client(`http://127.0.0.1:${master.port}`);
    const since = log.events.length;
    const hanging = client.request({ path: '/hang', method: 'GET' }).catch((err: unknown) => err);
    const old = (await next(log, 'the request in flight', (e) => e.event === 'app-hanging', since)).pid;
    master.child.kill('SIGHUP');
    const drained = await next(log, `pid ${old} drained`, (e) => e.event === 'app-drained' && e.pid === old, since, 15_000);
    assert.equal(drained.forced, 1, 'the request that never ends is cut at drainMs');
    assert.ok((drained.durationMs as number) < 5_000, `drained after ${drained.durationMs as number} ms`);
    assert.ok(await hanging, 'the hung request ended when its connection was cut');
    await client.close().catch(() => undefined);
    await quit(master);
  });
});
