/**
 * The worker pool's restart policy with fake workers and a fake clock:
 * backoff that doubles per crash within the window up to maxDelayMs, the
 * crash loop reported once, the window forgetting old crashes, the ready
 * timeout, no restarts once stopped, and a reload that keeps the old worker
 * where the new one fails; config closeUpgraded reaches the workers.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig, type Config } from '../../src/supervisor/config.js';
import { WorkerPool } from '../../src/supervisor/worker-pool.js';
import { tempDir } from '../helpers/temp-dirs.js';
import { FakePlatform, settle, type FakeChild } from './fake-platform.js';

interface Logged {
  level: string;
  message: string;
  event?: unknown;
  code?: unknown;
}

function setup(overrides: { workers?: number; restart?: Partial<Config['restart']>; readyMs?: number; closeUpgraded?: boolean } = {}) {
  const dir = tempDir('baton-unit-pool-');
  const base = loadConfig(undefined, { app: path.join(dir, 'app.mjs'), runDir: dir }, dir, { requireApp: false });
  const config: Config = {
    ...base,
    workers: overrides.workers ?? 1,
    restart: { initialDelayMs: 100, maxDelayMs: 10_000, crashLoopCount: 5, windowMs: 30_000, ...overrides.restart },
    timeouts: { ...base.timeouts, readyMs: overrides.readyMs ?? 5_000, drainMs: 1_000, killGraceMs: 500 },
    closeUpgraded: overrides.closeUpgraded ?? base.closeUpgraded,
  };
  const platform = new FakePlatform();
  const pool = new WorkerPool(config, [], path.join(dir, 'pool'), undefined, platform);
  const logs: Logged[] = [];
  pool.on('log', (level, message, details) => logs.push({ level, message, ...details }));
  const child = (i: number): FakeChild => {
    const s = platform.spawned[i];
    assert.ok(s, `worker #${i} was spawned (${platform.spawned.length} so far)`);
    return s.child;
  };
  return { pool, platform, clock: platform.clock, logs, child, config };
}

test('a crashing worker is restarted after a backoff that doubles per crash, up to maxDelayMs', async () => {
  const { pool, platform, clock, child } = setup({ restart: { initialDelayMs: 100, maxDelayMs: 500, crashLoopCount: 10 } });
  pool.start();
  child(0).phase('serving');
  await settle();
  assert.equal(pool.allReady, true);

  child(0).exit(1);
  await settle();
  const delays: number[] = [];
  for (let i = 1; i <= 5; i++) {
    assert.equal(clock.pending.length, 1, 'one restart is scheduled');
    const delay = clock.pending[0]!;
    delays.push(delay);
    await clock.advance(delay - 1);
    assert.equal(platform.spawned.length, i, 'not restarted before its delay');
    await clock.advance(1);
    assert.equal(platform.spawned.length, i + 1, 'restarted once its delay passed');
    child(i).exit(1); // dies while starting
    await settle();
  }
  assert.deepEqual(delays, [100, 200, 400, 500, 500]);
  assert.equal(pool.counters.restarts, 5);
});

test('a crash loop is reported once, and clears when the worker stays up past the window', async () => {
  const { pool, clock, child, logs } = setup({ restart: { initialDelayMs: 10, maxDelayMs: 40, crashLoopCount: 3, windowMs: 1_000 } });
  pool.start();
  for (let i = 0; i < 4; i++) {
    child(i).exit(1);
    await settle();
    await clock.advance(clock.pending[0]!);
  }
  const loops = logs.filter((l) => l.event === 'crash-loop');
  assert.equal(loops.length, 1, 'reported once, not per crash');
  assert.equal(loops[0]!.code, 'ERR_BATON_CRASH_LOOP');
  assert.match(loops[0]!.message, /worker 0 crashed 3 times within 1000 ms/);
  assert.deepEqual(pool.crashLooping, [0]);

  // The 5th worker comes up after the window: its crashes are history.
  await clock.advance(1_000);
  child(4).phase('serving');
  await settle();
  assert.deepEqual(pool.crashLooping, []);
  assert.equal(pool.allReady, true);
});

test('crashes older than the window do not count: the backoff starts over', async () => {
  const { pool, clock, child } = setup({ restart: { initialDelayMs: 100, windowMs: 1_000 } });
  pool.start();
  child(0).exit(1);
  await settle();
  assert.deepEqual(clock.pending, [100]);
  await clock.advance(100);
  child(1).exit(1);
  await settle();
  assert.deepEqual(clock.pending, [200], 'second crash within the window: doubled');
  await clock.advance(200);
  child(2).phase('serving');
  await settle();
  await clock.advance(1_000);
  child(2).exit(1);
  await settle();
  assert.deepEqual(clock.pending, [100], 'the earlier crashes left the window');
});

test('a worker not ready within readyMs is killed and restarted', async () => {
  const { pool, platform, clock, child, logs } = setup({ readyMs: 2_000 });
  pool.start();
  await clock.advance(1_999);
  assert.deepEqual(child(0).signals, []);
  await clock.advance(1);
  assert.deepEqual(child(0).signals, ['SIGKILL']);
  const failed = logs.find((l) => l.event === 'worker-failed');
  assert.equal(failed?.code, 'ERR_BATON_WORKER_FAILED');
  assert.match(failed!.message, /was not ready within 2000 ms/);
  await clock.advance(100);
  assert.equal(platform.spawned.length, 2, 'restarted after the backoff');
});

test('a stopped pool restarts nothing, even a restart already scheduled', async () => {
  const { pool, platform, clock, child } = setup();
  pool.start();
  child(0).phase('serving');
  child(0).exit(1);
  await settle();
  assert.equal(clock.pending.length, 1);
  await pool.stopAll(1_000);
  await clock.advance(60_000);
  assert.equal(platform.spawned.length, 1);
  assert.equal(pool.counters.restarts, 0);
});

test('reload: the old worker stops once the new one is ready, and serves on where the new one fails', async () => {
  const { pool, clock, child, config } = setup({ workers: 1 });
  pool.start();
  child(0).phase('serving');
  await settle();

  const first = pool.reload(config);
  child(1).phase('serving'); // took slot 0 over
  assert.deepEqual(await first, { failed: [] });
  await settle();
  assert.equal(child(0).sentOf('stop').length, 1, 'the replaced worker is told to drain');
  assert.equal(child(0).exitCode, 0);

  const second = pool.reload(config);
  child(2).exit(1); // the new code crashes at start
  assert.deepEqual(await second, { failed: [0] });
  await settle();
  assert.equal(child(1).sentOf('stop').length, 0, 'the serving worker is left alone');
  assert.equal(pool.allReady, true);
  assert.equal(clock.pending.filter((d) => d <= config.restart.maxDelayMs).length, 0, 'no restart: the slot has its worker');
});

test('with no listener yet, the first worker starts alone and the others follow once it serves', async () => {
  const { pool, platform, child } = setup({ workers: 3 });
  pool.start();
  assert.equal(platform.spawned.length, 1, 'one worker binds the listeners first');
  child(0).phase('serving');
  await settle();
  assert.equal(platform.spawned.length, 3);
});

test('config closeUpgraded: false reaches each worker as BATON_CLOSE_UPGRADED=0; the default sets nothing', async () => {
  for (const closeUpgraded of [undefined, false]) {
    const { pool, platform } = setup({ closeUpgraded });
    pool.start();
    await settle();
    assert.equal(platform.spawned[0]?.env.BATON_CLOSE_UPGRADED, closeUpgraded === false ? '0' : undefined);
    await pool.stopAll(1_000);
  }
});
