/**
 * `baton status --json` against /proc; systemd's notify protocol against a
 * real notify socket (READY, RELOADING, STOPPING, MAINPID on upgrade);
 * socket activation through `systemd-socket-activate`; USR1 reopening the log
 * file after logrotate renamed it; `baton start` refusing a second master and
 * a broken config.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { childrenOf } from '../bench/lib/rss.js';
import { loadBinding } from '../src/native/binding.js';
import { getOnce } from './helpers/http-load.js';
import { activate as activateCommand, activateSkip, freePort } from './helpers/socket-activate.js';
import { EventLog, killAll, tempDir, waitGone } from './helpers/server-process.js';
import { cli, next, startMaster, writeApp, writeConfig } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

test('baton status --json matches the processes running (/proc)', async () => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 3');
  const master = await startMaster(log, cfg);
  const { stdout } = await run(process.execPath, [cli, 'status', '--json', '-c', cfg]);
  const status = JSON.parse(stdout) as {
    masters: { pid: number; workers: { pid: number; state: string; connections: number }[]; listeners: { port: number }[] }[];
  };
  assert.equal(status.masters.length, 1);
  const m = status.masters[0]!;
  assert.equal(m.pid, master.pid);
  assert.ok(fs.existsSync(`/proc/${m.pid}`));
  assert.deepEqual(
    m.workers.map((w) => w.pid).sort(),
    childrenOf(master.pid).sort(),
    "the workers listed are exactly the master's child processes",
  );
  for (const w of m.workers) {
    assert.equal(w.state, 'ready');
    assert.equal(typeof w.connections, 'number');
    assert.match(fs.readFileSync(`/proc/${w.pid}/cmdline`, 'utf8'), /app\.mjs/);
  }
  assert.equal(m.listeners[0]!.port, master.port);
  const human = await run(process.execPath, [cli, 'status', '-c', cfg]);
  assert.match(human.stdout, new RegExp(`master pid ${master.pid} \\(current\\) running`));

  // A second master for the same name is refused, and the first serves on.
  const second = spawnSync(process.execPath, [cli, 'start', '-c', cfg], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(second.status, 1);
  assert.match(second.stderr, new RegExp(`a master \\(pid ${master.pid}\\) already runs 'app'.*ERR_BATON_MASTER_RUNNING`));
  assert.equal((await getOnce(`http://127.0.0.1:${master.port}`)).status, 200);

  const stop = await run(process.execPath, [cli, 'stop', '-c', cfg]);
  assert.match(stop.stdout, /exited/);
  const gone = await run(process.execPath, [cli, 'status', '--json', '-c', cfg]).catch((e: { code: number; stdout: string }) => e);
  assert.equal((gone as { code?: number }).code, 3);
});

test('baton start with a broken config fails with file, line and key', () => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 1\nlisteners2: {}');
  const r = spawnSync(process.execPath, [cli, 'start', '-c', cfg], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /baton\.yaml:9:1: listeners2: unknown key 'listeners2' \[ERR_BATON_CONFIG_INVALID\]/);
  fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('workers: 1\nlisteners2: {}', 'workers: 0'));
  const r2 = spawnSync(process.execPath, [cli, 'start', '-c', cfg], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /baton\.yaml:8:10: workers: Too small: expected number to be >=1/);
});

/** A notify socket: every datagram received, split into KEY=value maps. */
function notifySocket(file: string): {
  messages: Record<string, string>[];
  waitFor(pred: (m: Record<string, string>) => boolean, what: string): Promise<Record<string, string>>;
  close(): void;
} {
  const native = loadBinding();
  const fd = native.datagramBind(file);
  assert.ok(fd >= 0, `datagramBind: ${fd}`);
  const messages: Record<string, string>[] = [];
  let waiters: { pred: (m: Record<string, string>) => boolean; resolve: (m: Record<string, string>) => void }[] = [];
  const buffer = Buffer.alloc(4096);
  const poll = native.pollStart(fd, true, false, () => {
    for (;;) {
      const r = native.recvmsg(fd, buffer);
      if (typeof r === 'number') break;
      const text = buffer.subarray(0, r.bytes).toString();
      const m = Object.fromEntries(text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      messages.push(m);
      waiters = waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    }
  });
  assert.notEqual(typeof poll, 'number');
  return {
    messages,
    waitFor(pred, what) {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no notification: ${what}; got ${JSON.stringify(messages)}`)), 30_000);
        waiters.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
    close() {
      native.pollClose(poll as never);
      native.close(fd);
    },
  };
}

test('sd_notify: READY, RELOADING, MAINPID on a binary upgrade, STOPPING — on a real notify socket', async () => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 1');
  const notify = notifySocket(path.join(dir, 'notify.sock'));
  after(() => notify.close());
  const master = await startMaster(log, cfg, [], { NOTIFY_SOCKET: path.join(dir, 'notify.sock') });
  const ready = await notify.waitFor((m) => m.READY === '1', 'READY=1');
  assert.equal(ready.MAINPID, String(master.pid));
  assert.match(ready.STATUS ?? '', /serving/);

  let mark = log.events.length;
  process.kill(master.pid, 'SIGHUP');
  await notify.waitFor((m) => m.RELOADING === '1', 'RELOADING=1');
  await next(log, 'reload done', (e) => e.event === 'reload-done', mark);
  await notify.waitFor((m) => m.READY === '1' && /reloaded/.test(m.STATUS ?? ''), 'READY=1 after the reload');

  mark = log.events.length;
  process.kill(master.pid, 'SIGUSR2');
  const newPid = (await next(log, 'new master', (e) => e.event === 'master-ready' && e.pid !== master.pid, mark)).pid;
  await notify.waitFor((m) => m.MAINPID === String(newPid) && m.READY === '1', 'MAINPID of the new master');
  process.kill(master.pid, 'SIGWINCH');
  await next(log, 'standby', (e) => e.event === 'master-phase' && e.phase === 'standby', mark);
  process.kill(master.pid, 'SIGQUIT');
  await new Promise((r) => master.child.once('exit', r));
  process.kill(newPid, 'SIGQUIT');
  await notify.waitFor(
    (m) => m.STOPPING === '1' && notify.messages.indexOf(m) > notify.messages.findIndex((x) => x.MAINPID === String(newPid)),
    'STOPPING=1',
  );
  await waitGone(newPid, 15_000);
});

test('socket activation: systemd-socket-activate hands the listener to the master', { skip: activateSkip }, async () => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const cfg = writeConfig(dir, 'workers: 2');
  fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('listeners:\n  http: { host: 127.0.0.1, port: 0 }\n', ''));
  const port = await freePort();
  const child = await activateCommand(log, port, {}, 'http', [process.execPath, cli, 'start', '-c', cfg]);
  // The first connection starts the master (systemd-socket-activate execs it in
  // place, same pid); it waits in the backlog until a worker accepts it.
  const first = getOnce(`http://127.0.0.1:${port}`);
  const starting = await log.waitFor((e) => e.event === 'master-starting' && e.pid === child.pid, 'master starting', 20_000);
  assert.deepEqual(
    (starting.listeners as { name: string; port: number; origin: string }[]).map((l) => [l.name, l.port, l.origin]),
    [['http', port, 'inherited']],
  );
  assert.equal((await first).status, 200);
  child.kill('SIGQUIT');
  await new Promise((r) => child.once('exit', r));
});

test("USR1 reopens the log file after logrotate renamed it; the workers' output goes there too", async () => {
  const dir = tempDir('baton-sup-');
  writeApp(dir, 'v1');
  const logFile = path.join(dir, 'master.log');
  const cfg = writeConfig(dir, `workers: 1\nlog: { file: ${logFile} }`);
  const child = spawn(process.execPath, [cli, 'start', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The log file is the only signal here: watch its directory first, then
  // check, so a write between the check and the watch cannot be missed.
  const waitLine = (file: string, re: RegExp) =>
    new Promise<void>((resolve) => {
      const w = fs.watch(dir);
      const check = () => {
        if (fs.existsSync(file) && re.test(fs.readFileSync(file, 'utf8'))) {
          w.close();
          resolve();
        }
      };
      w.on('change', check);
      check();
    });
  await waitLine(logFile, /"event":"master-ready"/);
  // The worker's stdout line, as a record of the master's log.
  await waitLine(logFile, /"event":"worker-output".*"stream":"stdout".*app-ready/);
  fs.renameSync(logFile, `${logFile}.1`);
  await run(process.execPath, [cli, 'reopen', '-c', cfg]);
  await waitLine(logFile, /"event":"log-reopened"/);
  assert.doesNotMatch(fs.readFileSync(`${logFile}.1`, 'utf8'), /log-reopened/);
  // After the reopen, a new worker's output lands in the new file.
  process.kill(child.pid!, 'SIGHUP');
  await waitLine(logFile, /"event":"worker-output".*app-ready/);
  assert.equal(fs.readFileSync(`${logFile}.1`, 'utf8').match(/app-ready/g)?.length, 1);
  child.kill('SIGQUIT');
  await new Promise((r) => child.once('exit', r));
  assert.match(fs.readFileSync(logFile, 'utf8'), /"event":"master-exited"/);
});
