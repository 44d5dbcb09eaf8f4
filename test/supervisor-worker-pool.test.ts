/**
 * The master's worker pool on its own, with real worker processes: workers
 * retired for another master to take over (WINCH) but never taken over are
 * still stopped by stopAll() — the old master's fallback and its QUIT must not
 * wait for them for ever.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { alive } from '../src/core/proc.js';
import { loadConfig } from '../src/supervisor/config.js';
import { HeldListeners } from '../src/supervisor/held-listeners.js';
import { WorkerPool } from '../src/supervisor/worker-pool.js';
import { killAll, tempDir } from './helpers/server-process.js';
import { writeApp, writeConfig } from './helpers/supervisor.js';

test('stopAll() ends retired workers nobody took over', async (t) => {
  const dir = tempDir('baton-pool-');
  writeApp(dir, 'v1');
  const config = loadConfig(writeConfig(dir, 'workers: 2'));
  const listeners = await HeldListeners.open(config.listeners, [], false);
  t.after(() => listeners.close());
  // Workers write their events to this process's stdout: keep them out of the TAP stream.
  const pool = new WorkerPool(config, listeners.all, path.join(dir, 'pool'), () => undefined);
  t.after(() => killAll(pool.workers.map((w) => w.pid)));
  const ready = new Promise<void>((resolve) => {
    const check = () => pool.allReady && (pool.off('change', check), resolve());
    pool.on('change', check);
  });
  pool.start();
  await ready;
  const pids = pool.workers.map((w) => w.pid);
  assert.equal(pids.length, 2);

  const retired = pool.retireAll();
  assert.equal(retired.length, 2, 'both workers are offered to another master');
  assert.ok(pids.every(alive), 'retiring does not stop them');
  await pool.stopAll(1_000);
  assert.deepEqual(pids.filter(alive), [], 'every retired worker is gone');
  assert.equal(pool.workers.length, 0);
  pool.removeDir();
});
