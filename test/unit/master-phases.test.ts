/**
 * The master's phase machine with fake workers, a fake new master and fake
 * signals: start → running, HUP (reloading, or refused for a bad config),
 * USR2 → upgrading → superseded, WINCH → standby (absorb asked of the new
 * master), the new master's exit → running again (rollback), a new master
 * that dies before it is ready, signals refused in the wrong phase, and a new
 * master's own side (ready told to the old one, TERM as a rollback, giving up
 * when its workers crash-loop).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Master, PARENT_MASTER_ENV, type MasterPhase } from '../../src/supervisor/master.js';
import { tempDir } from '../helpers/temp-dirs.js';
import { FakePlatform, settle, type FakeChild } from './fake-platform.js';

const CONFIG = (dir: string, extra = '') =>
  [
    'name: app',
    'app: app.mjs',
    `runDir: ${dir}`,
    'workers: 2',
    'listeners:',
    '  http: { host: 127.0.0.1, port: 0 }',
    `log: { file: ${path.join(dir, 'master.log')} }`,
    'timeouts: { readyMs: 5000, drainMs: 1000, fastMs: 200, killGraceMs: 100 }',
    'restart: { initialDelayMs: 10, crashLoopCount: 2 }',
    extra,
  ].join('\n');

/** `parentKeys`: what the fake old master answers the new master's request for its ticket keys (null: it never answers). */
async function startMaster(
  t: TestContext,
  options: { parent?: boolean; config?: string; parentKeys?: Record<string, string> | null } = {},
) {
  const dir = tempDir('baton-unit-master-');
  fs.writeFileSync(path.join(dir, 'app.mjs'), '');
  const configFile = path.join(dir, 'baton.yaml');
  fs.writeFileSync(configFile, options.config ?? CONFIG(dir));
  const platform = new FakePlatform();
  const env: NodeJS.ProcessEnv = {};
  if (options.parent) {
    env[PARENT_MASTER_ENV] = '4242';
    platform.process.hasChannel = true;
    platform.process.connected = true;
    if (options.parentKeys !== undefined) platform.process.ticketKeys = options.parentKeys ?? undefined;
  }
  const starting = Master.start({ configFile, overrides: {}, env, platform });
  if (options.parentKeys === null) {
    // The old master never answers: the new master waits TICKET_KEYS_WAIT_MS, then starts its workers anyway.
    const asked = () => platform.process.sent.some((m) => (m as { type?: string }).type === 'ticket-keys-wanted');
    for (let i = 0; i < 200 && !asked(); i++) await settle();
    assert.ok(asked(), 'the new master asks the old one for its ticket keys');
    assert.equal(platform.spawned.length, 0, 'no worker starts before the keys came or the wait ended');
    await platform.clock.advance(5_000);
  }
  const master = await starting;
  t.after(async () => {
    if (master.phase !== 'exited') {
      platform.process.raise('SIGTERM');
      await settle();
      await platform.clock.advance(10_000);
    }
  });
  const phases: MasterPhase[] = [];
  master.on('phase', (to) => phases.push(to));
  const workers = () => platform.spawned.filter((s) => s.args.includes('--import')).map((s) => s.child);
  /** Every running worker that has not said so yet reports that it serves. */
  const serveAll = async () => {
    for (const w of workers()) if (w.exitCode === null && w.signalCode === null && w.sentOf('stop').length === 0) w.phase('serving');
    await settle();
  };
  const pidFile = path.join(dir, 'app.pid');
  return { dir, configFile, platform, master, phases, workers, serveAll, pidFile };
}

/** The new master spawned by USR2 (the one spawn that is not a worker). */
function newMaster(platform: FakePlatform): FakeChild | undefined {
  return platform.spawned.find((s) => !s.args.includes('--import'))?.child;
}

test('starting → running once every worker serves; HUP reloads; TERM stops and exits', async (t) => {
  const { master, phases, workers, serveAll, pidFile, platform } = await startMaster(t);
  assert.equal(master.phase, 'starting');
  assert.equal(workers().length, 2);
  workers()[0]!.phase('serving');
  await settle();
  assert.equal(master.phase, 'starting', 'one worker of two is not enough');
  await serveAll();
  assert.equal(master.phase, 'running');
  assert.equal(Number(fs.readFileSync(pidFile, 'utf8')), process.pid, 'the pid file is written once running');

  platform.process.raise('SIGHUP');
  await settle();
  assert.equal(master.phase, 'reloading');
  assert.equal(workers().length, 4, 'a new worker per slot');
  await serveAll();
  assert.equal(master.phase, 'running');
  const status = await master.status();
  assert.equal(status.reload.last?.result, 'done');
  assert.equal(status.counters.reloads, 1);

  platform.process.raise('SIGTERM');
  await settle();
  assert.equal(master.phase, 'exited');
  assert.equal(await master.exited(), 0);
  assert.deepEqual(phases, ['running', 'reloading', 'running', 'stopping', 'exited']);
  assert.equal(platform.running.length, 0, 'every worker is gone');
  assert.equal(platform.process.listeners('SIGHUP'), 0, 'signal handlers are removed');
  assert.equal(platform.process.keptAlive, 0, 'the event loop is let go');
  assert.equal(fs.existsSync(pidFile), false, 'its pid file is removed');
});

test('HUP with a broken config is refused and changes nothing', async (t) => {
  const { master, configFile, serveAll, workers, platform } = await startMaster(t);
  await serveAll();
  fs.writeFileSync(configFile, 'workers: two\n');
  platform.process.raise('SIGHUP');
  await settle();
  assert.equal(master.phase, 'running');
  assert.equal(workers().length, 2, 'no new worker');
  const status = await master.status();
  assert.equal(status.reload.last?.result, 'refused');
  assert.match(status.lastError ?? '', /reload refused: .*workers/);
});

test('USR2 → upgrading → superseded; WINCH → standby; the new master exits → running with new workers', async (t) => {
  const { master, phases, serveAll, workers, platform, pidFile } = await startMaster(t);
  await serveAll();
  platform.process.raise('SIGWINCH');
  assert.equal(master.phase, 'running', 'WINCH is refused while no newer master serves');

  platform.process.raise('SIGUSR2');
  assert.equal(master.phase, 'upgrading');
  const child = newMaster(platform);
  assert.ok(child, 'a new master was spawned');
  const spawned = platform.spawned.find((s) => s.child === child)!;
  assert.equal(spawned.env[PARENT_MASTER_ENV], String(process.pid));
  assert.deepEqual(
    spawned.listeners.map((l) => l.name),
    ['http'],
    'it inherits the listeners',
  );
  assert.equal(fs.existsSync(`${pidFile}.oldbin`), true, 'the pid file became .oldbin');

  platform.process.raise('SIGUSR2');
  assert.equal(platform.spawned.filter((s) => !s.args.includes('--import')).length, 1, 'a second USR2 is refused');

  child.message({ baton: 'new-master', type: 'ready', pid: child.pid });
  assert.equal(master.phase, 'superseded');

  platform.process.raise('SIGWINCH');
  assert.equal(master.phase, 'standby');
  const absorb = child.sentOf('absorb') as { workers: { slot: number; socketPath: string }[] }[];
  assert.equal(absorb.length, 1);
  assert.deepEqual(
    absorb[0]!.workers.map((w) => w.slot),
    [0, 1],
    'the new master is asked to take both workers over',
  );
  // Not taken over within readyMs: they drain by themselves.
  await platform.clock.advance(5_000);
  assert.equal(workers().filter((w) => w.sentOf('stop').length === 1).length, 2);
  assert.equal(platform.running.filter((c) => c !== child).length, 0);

  child.exit(0);
  await settle();
  assert.equal(master.phase, 'running', 'rollback: the new master is gone');
  assert.equal(workers().length, 4, 'standby restarted its workers');
  assert.equal(Number(fs.readFileSync(pidFile, 'utf8')), process.pid, 'the pid file is back');
  assert.deepEqual(phases, ['running', 'upgrading', 'superseded', 'standby', 'running']);
});

test('a new master that dies before it is ready: upgrade failed, running again', async (t) => {
  const { master, serveAll, platform, pidFile } = await startMaster(t);
  await serveAll();
  platform.process.raise('SIGUSR2');
  newMaster(platform)!.exit(1);
  await settle();
  assert.equal(master.phase, 'running');
  const status = await master.status();
  assert.match(status.lastError ?? '', /exited with code 1 before it was ready; this master serves on/);
  assert.equal(fs.existsSync(pidFile), true);
  assert.equal(fs.existsSync(`${pidFile}.oldbin`), false);
});

test('a new master tells the old one when it serves, and rolls back to it on TERM', async (t) => {
  const { master, serveAll, platform, workers } = await startMaster(t, { parent: true });
  await serveAll();
  assert.equal(master.phase, 'running');
  assert.deepEqual(platform.process.sent, [
    { baton: 'new-master', type: 'ticket-keys-wanted' },
    { baton: 'new-master', type: 'ready', pid: process.pid },
  ]);

  platform.process.raise('SIGTERM');
  await settle();
  assert.equal(master.phase, 'running', 'it waits for the old master to serve again');
  assert.deepEqual(platform.process.sent.at(-1), { baton: 'new-master', type: 'resume' });
  assert.equal(
    workers().every((w) => w.sentOf('stop').length === 0),
    true,
  );
  platform.process.raise('message', { baton: 'old-master', type: 'resumed' });
  await settle();
  assert.equal(master.phase, 'exited');
  assert.equal(await master.exited(), 0);
  assert.equal(
    workers().every((w) => (w.sentOf('stop')[0] as { drainMs?: number })?.drainMs === 1000),
    true,
    'its workers drain gracefully (drainMs, not fastMs)',
  );
});

test('a new master whose workers crash-loop while starting gives up, so the old one serves on', async (t) => {
  const { master, platform, workers } = await startMaster(t, { parent: true });
  for (let round = 0; round < 3 && master.phase === 'starting'; round++) {
    for (const w of workers()) if (w.exitCode === null && w.signalCode === null) w.exit(1);
    await settle();
    await platform.clock.advance(100);
  }
  assert.equal(await master.exited(), 1);
  assert.deepEqual(master.phaseHistory, ['starting', 'stopping', 'exited']);
  const status = await master.status();
  assert.match(status.lastError ?? '', /workers keep failing; exiting so the old master serves on/);
});

/** The ticket keys worker `w` is given when it asks its master (as a worker does before it serves). */
async function keysOf(w: FakeChild): Promise<Record<string, string>> {
  w.message({ baton: 'worker', type: 'ticket-keys' });
  await settle();
  return (w.sentOf('ticket-keys').at(-1) as { keys: Record<string, string> }).keys;
}

const KEYS = Buffer.alloc(48, 7).toString('base64');

test("USR2: the old master gives the new one its workers' ticket keys when asked, none when it opted out", async (t) => {
  for (const optOut of [false, true]) {
    const dir = tempDir('baton-unit-master-');
    const { serveAll, workers, platform } = await startMaster(t, {
      config: CONFIG(dir, optOut ? 'tlsTicketKeys: false' : ''),
    });
    await serveAll();
    platform.process.raise('SIGUSR2');
    const child = newMaster(platform)!;
    child.message({ baton: 'new-master', type: 'ticket-keys-wanted' });
    await settle();
    const given = child.sentOf('ticket-keys') as { keys: Record<string, string> }[];
    assert.equal(given.length, 1, 'one answer');
    if (optOut) assert.deepEqual(given[0]!.keys, {}, 'tlsTicketKeys: false: no keys leave the master');
    else {
      assert.deepEqual(Object.keys(given[0]!.keys), ['http']);
      assert.equal(given[0]!.keys.http, (await keysOf(workers()[0]!)).http, 'the keys its workers serve with');
    }
  }
});

test("a new master's workers serve with the old master's ticket keys; opted out, it does not ask", async (t) => {
  const { serveAll, workers, platform } = await startMaster(t, { parent: true, parentKeys: { http: KEYS } });
  assert.deepEqual(platform.process.sent[0], { baton: 'new-master', type: 'ticket-keys-wanted' });
  await serveAll();
  for (const w of workers()) assert.equal((await keysOf(w)).http, KEYS, 'every worker gets the inherited keys');

  const dir = tempDir('baton-unit-master-');
  const off = await startMaster(t, { parent: true, parentKeys: { http: KEYS }, config: CONFIG(dir, 'tlsTicketKeys: false') });
  await off.serveAll();
  assert.equal(
    off.platform.process.sent.some((m) => (m as { type?: string }).type === 'ticket-keys-wanted'),
    false,
    'tlsTicketKeys: false: no keys asked for',
  );
  assert.deepEqual(await keysOf(off.workers()[0]!), {});
});

test('a new master whose old master never gives keys starts its workers with keys of their own after the wait', async (t) => {
  const { master, serveAll, workers } = await startMaster(t, { parent: true, parentKeys: null });
  assert.equal(workers().length, 2);
  await serveAll();
  assert.equal(master.phase, 'running');
  const keys = await keysOf(workers()[0]!);
  assert.equal(Buffer.from(keys.http!, 'base64').length, 48);
  assert.notEqual(keys.http, KEYS);
  assert.equal((await keysOf(workers()[1]!)).http, keys.http, 'its own, one set for all its workers');
});

test('an old master tells its new master it is stopping; the new one then refuses USR2 saying the old one drains', async (t) => {
  const old = await startMaster(t);
  await old.serveAll();
  old.platform.process.raise('SIGUSR2');
  const child = newMaster(old.platform)!;
  child.message({ baton: 'new-master', type: 'ready', pid: child.pid });
  old.platform.process.raise('SIGQUIT');
  await settle();
  assert.equal(child.sentOf('stopping').length, 1, 'QUIT: the new master is told');

  const { master, serveAll, platform } = await startMaster(t, { parent: true });
  await serveAll();
  platform.process.raise('SIGUSR2');
  assert.match((await master.status()).lastError ?? '', /retire the old master \(QUIT\) first/);
  platform.process.raise('message', { baton: 'old-master', type: 'stopping' });
  platform.process.raise('SIGUSR2');
  assert.match(
    (await master.status()).lastError ?? '',
    /USR2 refused: the old master \(pid 4242\) still runs: it is stopping and exits once its workers have drained; USR2 again after that/,
  );
  assert.equal(newMaster(platform), undefined, 'no new master is spawned');
});
