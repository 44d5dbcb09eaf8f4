/**
 * Listen errors are one clear report, not a crash or a crash loop:
 * - the bundled example on a port in use exits 1 with one line naming the
 *   address (no "Unhandled 'error' event on WebSocketServer");
 * - a library app under `baton start --workers 2` without configured
 *   listeners, binding a fixed port itself: the second worker finds it in
 *   use; the master reports it once (the address, and to configure
 *   `listeners` or run the app unmodified), restarts nothing and exits 1.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from './helpers/socket-activate.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { cli } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

const example = fileURLToPath(new URL('../examples/example-server.js', import.meta.url));
const library = fileURLToPath(new URL('../src/index.js', import.meta.url));

test('the example on a port in use: exit 1 with one line naming the address', async (t) => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.after(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const dir = tempDir('baton-ex-');
  const child = spawn(process.execPath, [example], {
    env: { ...process.env, PORT: String(port), BATON_SOCKET_DIR: dir, BATON_PID_FILE: path.join(dir, 'example.pid') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout.resume();
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 1);
  assert.doesNotMatch(stderr, /Unhandled 'error' event/);
  assert.equal(stderr.trim().split('\n').length, 1, stderr);
  assert.match(stderr, new RegExp(`^baton example: cannot listen on http://127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.sock')),
    [],
    'nothing left in the socket dir',
  );
});

test('a library app binding a fixed port under baton start --workers 2, no listeners configured: one clear error, no crash loop', async () => {
  const dir = tempDir('baton-sup-');
  const port = await freePort();
  const app = path.join(dir, 'app.mjs');
  fs.writeFileSync(
    app,
    [
      "import http from 'node:http';",
      `import { start } from ${JSON.stringify(library)};`,
      "const g = await start({ name: 'app' });",
      `await g.listen('http', { host: '127.0.0.1', port: ${port} }, http.createServer((q, r) => r.end('ok')));`,
      'await g.ready();',
      'await g.exited();',
      'process.exit(0);',
    ].join('\n'),
  );
  const master = spawn(process.execPath, [cli, 'start', '--workers', '2', '--run-dir', dir, app], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env },
  });
  log.attach(master.stdout!);
  master.stderr!.resume();
  const [code] = (await once(master, 'exit')) as [number];
  assert.equal(code, 1, log.output.join('\n'));
  const reports = log.events.filter((e) => e.event === 'listener-unconfigured');
  assert.equal(reports.length, 1, 'reported once');
  assert.match(
    String(reports[0]!.msg),
    new RegExp(`listener 'http' \\(127\\.0\\.0\\.1:${port}\\) itself and it is in use \\(EADDRINUSE\\)`),
  );
  assert.match(String(reports[0]!.msg), /listeners: \{ http: \{ host, port \} \}.*zero-code/);
  const slot1 = log.events.filter((e) => e.event === 'worker-starting' && e.slot === 1);
  assert.equal(slot1.length, 1, 'the slot is not restarted');
  const exited = log.events.find((e) => e.event === 'master-exited');
  assert.equal(exited?.reason, 'listener(s) http not configured');
});
