/**
 * Two copies of baton in one process: an app that drives baton's library from
 * its own dependency (`node_modules/baton`, a copy of this build), run under
 * `baton run` (whose preload is the CLI's copy). The preload must see that the
 * app's copy started a generation and stay out of the way — one generation per
 * process, one upgrade socket — and upgrades under keep-alive load lose
 * nothing. Errors of one copy are recognised by the other (`instanceof`).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, describe, test } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { AppRunner, appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  killAll(log.events.map((e) => e.pid));
  apps.killAll();
});

/** A second, real copy of this build as the app's own `node_modules/baton` (its dependencies shared). */
function installCopy(appDir: string): void {
  const pkg = path.join(appDir, 'node_modules', 'baton');
  fs.mkdirSync(path.join(pkg, 'build', 'Release'), { recursive: true });
  for (const f of ['package.json', 'binding.gyp']) fs.copyFileSync(path.join(root, f), path.join(pkg, f));
  fs.cpSync(path.join(root, 'dist', 'src'), path.join(pkg, 'dist', 'src'), { recursive: true });
  fs.copyFileSync(path.join(root, 'build', 'Release', 'baton_native.node'), path.join(pkg, 'build', 'Release', 'baton_native.node'));
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
}

describe('two copies of baton in one process', () => {
  test('errors of one copy are BatonErrors to the other (brand, not identity)', async () => {
    const url = pathToFileURL(path.join(root, 'dist', 'src', 'core', 'errors.js')).href;
    const a = (await import(url)) as typeof import('../src/core/errors.js');
    const b = (await import(`${url}?copy=2`)) as typeof import('../src/core/errors.js');
    assert.notEqual(a.BatonError, b.BatonError, 'two module instances');
    const err = new b.BatonError('ERR_BATON_ABORTED', 'from the other copy');
    assert.ok(err instanceof a.BatonError);
    assert.ok(a.isBatonError(err, 'ERR_BATON_ABORTED'));
    assert.ok(!(new Error('plain') instanceof a.BatonError));
    assert.ok(!a.isBatonError({ code: 'ERR_BATON_ABORTED', message: 'look-alike' }));
  });

  test('an app with its own baton under `baton run`: one generation per process, 3 takeovers under load, 0 failed', async () => {
    const dir = tempDir('baton-two-copies-');
    installCopy(dir);
    const app = path.join(dir, 'app.mjs');
    fs.copyFileSync(appFile('library.mjs'), app);
    const env = { APP_SOCKET_DIR: dir };
    let pid = (await apps.run(dir, app, env).ready()).pid;
    const port = log.events.find((e) => e.event === 'listening' && e.pid === pid)!.port as number;
    const load = new HttpLoad(`http://127.0.0.1:${port}`, 16);
    await load.waitForMore(100);
    for (let i = 1; i <= 3; i++) {
      const next = await apps.upgrade(dir, app, pid, env);
      assert.notEqual(next, pid);
      await load.waitForGeneration((g) => g === i + 1);
      await load.waitForMore(100);
      pid = next;
    }
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.slice(0, 5).join('; ')}`);
    assert.deepEqual([...result.generations.keys()].sort(), [1, 2, 3, 4], 'one generation number per process');
    // Only the app's generation has an upgrade socket: the preload started none of its own.
    const sockets = fs.readdirSync(dir).filter((f) => f.endsWith('.sock'));
    assert.deepEqual(sockets, ['library-app.sock']);
    const origins = log.events.filter((e) => e.event === 'ready').map((e) => e.origin);
    assert.deepEqual(origins, ['fresh', 'takeover', 'takeover', 'takeover']);
  });
});
