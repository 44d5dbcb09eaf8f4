/**
 * A Node internal baton relies on is missing (a preload hides Node's private
 * list of HTTP/1.1 connections before baton starts): the generation says so —
 * a 'warning' ERR_BATON_INTERNAL_MISSING naming the internal and what
 * degrades, also under `degraded` in `baton status` — and its HTTP/1.1
 * connections drain instead of migrating, without losing a request.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { FreshProber, HttpLoad } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, predecessorDone, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';
import { cli, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const run = promisify(execFile);
const hide = `--import=${pathToFileURL(fixture('hide-http-connections')).href}`;
const nodeOptions = [process.env.NODE_OPTIONS, hide].filter(Boolean).join(' ');
const INTERNAL = 'http.server.connections';

describe('a missing Node internal', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it('is reported at start-up, and HTTP/1.1 connections drain instead of migrating, none lost', async () => {
    // Without the preload: no such warning before ready (warnings come right after start() resolved).
    const plainEnv = { BATON_SOCKET_DIR: tempDir(), FIXTURE_NAME: 'plain' };
    const plain = spawnFixture(fixture('server'), plainEnv, log);
    await log.waitEvent('ready', plain.pid);
    assert.equal(
      log.events.find((e) => e.pid === plain.pid && e.event === 'warning'),
      undefined,
      'a generation with every internal warned',
    );
    plain.kill('SIGTERM');

    const env = { BATON_SOCKET_DIR: tempDir(), NODE_OPTIONS: nodeOptions };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const warning = await log.waitFor((e) => e.pid === first.pid && e.event === 'warning', 'the warning', 10_000);
    assert.equal(warning.code, 'ERR_BATON_INTERNAL_MISSING');
    assert.match(String(warning.message), new RegExp(`'${INTERNAL.replaceAll('.', '\\.')}'`));
    assert.match(String(warning.message), /HTTP\/1\.1 connections drain .* instead of migrating/);

    const origin = `http://127.0.0.1:${listening.http}`;
    const load = new HttpLoad(origin, 16);
    await load.waitForGeneration((g) => g === 1);
    const connectsBefore = load.connects;
    const prober = new FreshProber(origin);
    const since = log.events.length;
    const ready = await upgradeFixture(log, env, 'takeover', first.pid!, 2, since);
    const report = await predecessorDone(log, ready, since);
    await load.waitForGeneration((g) => g === 2);
    const probed = await prober.stop();
    const result = await load.stop();

    assert.equal(report.migrated, 0, 'an HTTP/1.1 connection migrated without the connection list');
    assert.equal(report.forced, 0, 'a connection was cut at the drain timeout');
    assert.ok(load.connects > connectsBefore, 'the clients reconnected to the successor (Connection: close)');
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    assert.equal(probed.failed, 0, `failed fresh requests: ${probed.errors.join('; ')}`);
    assert.ok(result.ok > 0 && probed.ok > 0);
    process.kill(ready.pid, 'SIGTERM');
    await log.waitEvent('exit', ready.pid);
  });

  it('is shown by baton status for the worker that lacks it', async () => {
    const dir = tempDir('baton-sup-');
    writeApp(dir, 'v1');
    const cfg = writeConfig(dir, '');
    const master = await startMaster(log, cfg, [], { NODE_OPTIONS: nodeOptions });
    try {
      const status = await statusOf(dir, master.pid);
      const worker = status.workers[0]!;
      assert.deepEqual(
        worker.degraded.map((d) => d.internal),
        [INTERNAL],
      );
      const { stdout } = await run(process.execPath, [cli, 'status', '-c', cfg]);
      assert.match(stdout, /degraded: HTTP\/1\.1 connections drain .* \(missing internal http\.server\.connections\)/);
    } finally {
      killAll([master.pid], 'SIGTERM');
    }
  });
});
