/**
 * No stale files once the survivor serves: after a SIGKILL of a new master
 * (before it was ready, or right after WINCH) or of a worker before it
 * published its upgrade socket (during a reload), the run dir holds only the
 * surviving master's files — no control socket or worker slots of a dead
 * master, no `<name>.sock.<pid>.tmp`, no `.<name>.pid.<pid>.tmp` of a dead pid.
 * Each kill happens at a named protocol step (failpoints).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { freshRequests } from './helpers/http-load.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { next, quit, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** Every path under `dir`, relative. */
function tree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** Asserts that nothing under `runDir` belongs to a process other than master `pid` and its workers `workers`. */
function onlyFilesOf(runDir: string, pid: number, dead: number[]): void {
  const files = tree(runDir);
  const stale = files.filter((f) => f.endsWith('.tmp') || dead.some((d) => new RegExp(`(^|\\D)${d}(\\D|$)`).test(f)));
  assert.deepEqual(stale, [], `stale files in ${runDir}: ${files.join(', ')}`);
  assert.ok(files.includes(`app-master-${pid}.sock`), files.join(', '));
  assert.deepEqual(
    files.filter((f) => /^app-(master-\d+\.sock|m\d+)$/.test(f)),
    [`app-m${pid}`, `app-master-${pid}.sock`],
    'one master',
  );
}

test('a killed new master (before ready, after WINCH) and a killed worker leave no stale files behind', async (t) => {
  const dir = tempDir('baton-sup-');
  const faults = tempDir('baton-faults-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 2');
  const origin = () => `http://127.0.0.1:${old.port}`;

  // What earlier killed processes left: a pid file temp, a dead master's control socket and slots.
  const gone = Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout);
  fs.writeFileSync(path.join(dir, `.app.pid.${gone}.tmp`), '');
  fs.writeFileSync(path.join(dir, `app-master-${gone}.sock`), '');
  fs.mkdirSync(path.join(dir, `app-m${gone}`, 'w0'), { recursive: true, mode: 0o700 });
  const old = await startMaster(log, cfg, [], { BATON_FAULTS: faults });
  t.after(() => killAll([old.pid]));
  onlyFilesOf(dir, old.pid, [gone]);

  const workersOf = (pid: number, since: number) =>
    log.events
      .slice(since)
      .filter((e) => e.event === 'worker-starting' && e.pid === pid)
      .map((e) => Number(e.workerPid));

  // 1. The new master killed when its workers serve, before it told the old one.
  fs.writeFileSync(path.join(faults, 'master.workers-serving'), 'kill');
  let mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const failed = await next(log, 'upgrade failed', (e) => e.event === 'upgrade-failed' && e.pid === old.pid, mark);
  const dead1 = Number(failed.msg && /new master pid (\d+)/.exec(String(failed.msg))?.[1]);
  for (const w of workersOf(dead1, mark)) await waitGone(w, 20_000);
  assert.deepEqual(new Set(await freshRequests(origin(), 3)), new Set([1]));
  onlyFilesOf(dir, old.pid, [gone, dead1]);

  // 2. The new master killed right after WINCH (told to absorb the old workers).
  fs.writeFileSync(path.join(faults, 'master.absorbing'), 'kill');
  mark = log.events.length;
  process.kill(old.pid, 'SIGUSR2');
  const dead2 = (await next(log, 'new master ready', (e) => e.event === 'master-ready' && e.pid !== old.pid, mark)).pid;
  process.kill(old.pid, 'SIGWINCH');
  await next(log, 'the old master notices', (e) => e.event === 'child-master-exited' && e.pid === old.pid, mark);
  const since = log.events.length;
  await log.waitFor(
    () => log.events.slice(since).filter((e) => e.event === 'worker-ready' && e.pid === old.pid).length >= 2,
    "the old master's workers ready again",
    30_000,
  );
  for (const w of workersOf(dead2, mark)) await waitGone(w, 20_000);
  await freshRequests(origin(), 3);
  onlyFilesOf(dir, old.pid, [gone, dead1, dead2]);

  // 3. A reload's new worker killed after its Hello, before it published its upgrade socket.
  fs.writeFileSync(path.join(faults, 'successor.hello-sent'), 'kill');
  mark = log.events.length;
  process.kill(old.pid, 'SIGHUP');
  await next(log, 'reload failed', (e) => e.event === 'reload-failed' && e.pid === old.pid, mark, 60_000);
  const killed = fs.readdirSync(faults).find((f) => f.startsWith('successor.hello-sent.fired-'));
  assert.ok(killed, 'a worker died at the step');
  const dead3 = Number(killed.split('-').pop());
  const s = await statusOf(dir, old.pid);
  assert.equal(s.workers.filter((w) => w.state === 'ready').length, 2, 'the old workers serve on');
  await freshRequests(origin(), 3);
  onlyFilesOf(dir, old.pid, [gone, dead1, dead2, dead3]);

  await quit(old);
  assert.deepEqual(
    tree(dir).filter((f) => /^app-|\.tmp$|\.sock/.test(f)),
    [],
    'a stopped master leaves nothing in the run dir',
  );
});
