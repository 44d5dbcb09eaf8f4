/**
 * The `baton` command as people use it: `--version`; the app's options after
 * the app path without `--` (and a clear hint when an option is unknown);
 * `baton status` shows generations started by `baton run`; `PORT` sets the
 * HTTP port of the README's main job (examples/baton.yaml) and a worker's
 * origin is `supervisor`, not `systemd`; one log format per output (JSON
 * lines when not a terminal, text when asked).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { getOnce } from './helpers/http-load.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { freePort } from './helpers/socket-activate.js';
import { cli, quit, startMaster, statusOf } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));
const repo = fileURLToPath(new URL('../../', import.meta.url));
const baton = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  promisify(execFile)(process.execPath, [cli, ...args], { env: { ...process.env, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

/** An app that says its argv, then listens. */
function writeArgvApp(dir: string): string {
  const entry = path.join(dir, 'argv.mjs');
  fs.writeFileSync(
    entry,
    `import http from 'node:http';
console.log(JSON.stringify({ event: 'app-argv', pid: process.pid, args: process.argv.slice(2) }));
http.createServer((_q, r) => r.end('ok')).listen(0, '127.0.0.1');
`,
  );
  return entry;
}

function runApp(args: string[]) {
  const child = spawn(process.execPath, [cli, 'run', ...args], {
    env: { ...process.env, BATON_LOG: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  log.attach(child.stdout!);
  log.attach(child.stderr!);
  return child;
}

describe('baton for people', () => {
  test('baton --version prints the package version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };
    const r = await baton(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  test("the app's options after the app path need no --; an unknown option before it says where they go", async () => {
    const dir = tempDir('baton-cli-');
    const entry = writeArgvApp(dir);
    for (const [argv, expected] of [
      [
        ['--socket-dir', dir, '--name', 'a1', entry, '--port', '3000', '-v', '--name', 'mine'],
        ['--port', '3000', '-v', '--name', 'mine'],
      ],
      [
        ['--socket-dir', dir, '--name', 'a2', entry, '--', '--port', '3000'],
        ['--port', '3000'],
      ],
    ] as const) {
      const since = log.events.length;
      runApp([...argv]);
      const e = await log.waitFor((x) => x.event === 'app-argv', 'the app argv', 20_000, since);
      assert.deepEqual(e.args, expected);
      await log.waitFor((x) => x.event === 'ready' && x.pid === e.pid, 'ready', 20_000, since);
      process.kill(e.pid, 'SIGTERM');
    }
    const r = await baton(['run', '--port', '3000', entry]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown option '--port'[\s\S]*options for the app go after the app path/);
  });

  test('baton status shows the generations started by baton run', async () => {
    const dir = tempDir('baton-cli-');
    const entry = writeArgvApp(dir);
    const since = log.events.length;
    runApp(['--socket-dir', dir, '--name', 'svc', entry]);
    const ready = await log.waitFor((x) => x.event === 'ready', 'ready', 20_000, since);
    const text = await baton(['status', '--socket-dir', dir, '--run-dir', dir, '--name', 'none']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      new RegExp(`generations without a master \\(baton run\\):\\n  svc: pid ${ready.pid}, ${dir}/svc\\.sock: .*argv\\.mjs`),
    );
    const json = JSON.parse((await baton(['status', '--json', '--socket-dir', dir, '--run-dir', dir, '--name', 'none'])).stdout) as {
      generations: { name: string; pid: number }[];
    };
    assert.deepEqual(
      json.generations.map((g) => [g.name, g.pid]),
      [['svc', ready.pid]],
    );
    process.kill(ready.pid, 'SIGTERM');
    await log.waitFor((x) => x.event === 'drained' && x.pid === ready.pid, 'stopped', 20_000, since);
    const none = await baton(['status', '--socket-dir', dir, '--run-dir', dir, '--name', 'none']);
    assert.equal(none.code, 3, 'nothing runs');
  });

  test("PORT sets the HTTP port of npm start's config (examples/baton.yaml); the workers' origin is 'supervisor'; JSON lines on a pipe", async () => {
    const dir = tempDir('baton-cli-');
    const port = await freePort();
    const h2cPort = await freePort();
    const master = await startMaster(log, path.join(repo, 'examples/baton.yaml'), ['--name', 'app', '--run-dir', dir], {
      PORT: String(port),
      H2C_PORT: String(h2cPort),
    });
    assert.equal(master.port, port);
    assert.equal((await getOnce(`http://127.0.0.1:${port}`)).status, 200);
    const status = await statusOf(dir, master.pid);
    assert.ok(status.workers.length > 0);
    assert.deepEqual(
      status.workers.map((w) => w.origin),
      status.workers.map(() => 'supervisor'),
    );
    const masterLines = log.output.filter((l) => l.includes(`"pid":${master.pid}`));
    assert.ok(masterLines.length > 0 && masterLines.every((l) => JSON.parse(l) !== null), 'JSON lines when stdout is not a terminal');
    await quit(master);
  });

  test('--log-format text: human lines; an unset ${VAR} in the config is a clear error', async () => {
    const dir = tempDir('baton-cli-');
    const cfg = path.join(dir, 'baton.yaml');
    fs.writeFileSync(
      cfg,
      `name: app\napp: ${path.join(repo, 'dist/examples/example-server.js')}\nrunDir: ${dir}\nlisteners:\n  http: { host: 127.0.0.1, port: '\${NO_SUCH_PORT}' }\n`,
    );
    const bad = await baton(['start', '-c', cfg]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /baton\.yaml:5:\d+: listeners\.http\.port: environment variable NO_SUCH_PORT is not set/);

    const port = await freePort();
    fs.writeFileSync(
      cfg,
      fs.readFileSync(cfg, 'utf8').replace("'${NO_SUCH_PORT}'", String(port)) + `  h2c: { host: 127.0.0.1, port: ${await freePort()} }\n`,
    );
    const child = spawn(process.execPath, [cli, 'start', '-c', cfg, '--log-format', 'text'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const serving = new Promise<void>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on('line', (l) => {
        lines.push(l);
        if (/master phase starting -> running/.test(l)) resolve();
      });
      child.once('exit', (code) => reject(new Error(`baton start exited with ${code}: ${lines.join('\n')}`)));
    });
    await serving;
    child.kill('SIGQUIT');
    await new Promise((r) => child.once('exit', r));
    const own = lines.filter((l) => !l.startsWith('[baton example'));
    assert.ok(own.length > 0);
    for (const l of own) assert.throws(() => JSON.parse(l), `not a JSON line: ${l}`);
    assert.ok(
      own.some((l) => /INFO.*master phase starting -> running/.test(l)),
      own.join('\n'),
    );
  });
});
