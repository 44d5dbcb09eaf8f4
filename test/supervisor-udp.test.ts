/**
 * UDP listeners under the supervisor (`baton start`):
 * - an unmodified UDP echo (test/apps/udp-echo.mjs: `dgram.createSocket('udp4')`,
 *   `bind(port, '127.0.0.1')`) in 2 workers, the socket configured as listener
 *   `dns: { type: udp4, … }`: the master binds it once and every worker reads
 *   it. A client sends numbered datagrams at a steady rate across 10 `baton
 *   reload`s: every datagram is answered exactly once (0 lost, 0 duplicated),
 *   none is read by an old worker after it stopped reading (its 'draining'
 *   line), and after each reload the new workers answer. The app answers 20 ms
 *   after it read a datagram, so an old worker that closed its socket at its
 *   successor's ready would lose its last replies. Then a binary upgrade
 *   (USR2, WINCH, QUIT): the new master's workers read the same socket;
 * - the same app without a configured listener: the first worker's socket is
 *   handed to the master (listener-adopted) and the second worker reads it too;
 * - a UDP entry of the config is validated, its errors naming file, line and entry;
 *   on a reload an unchanged UDP entry keeps its socket (the master never read it:
 *   a datagram sent to it meanwhile is still queued), a moved one is bound anew;
 * - socket activation (systemd-socket-activate --datagram): the master takes the
 *   inherited UDP socket of its name; the datagram that started it, queued
 *   before any process read, is answered by a worker;
 * - the library's `listenDatagram('dns', …)` in supervised workers gets the
 *   master's socket; the contrast: without the listener in the config, the
 *   second worker's bind fails with EADDRINUSE, reported once as
 *   listener-unconfigured (what every `baton start` UDP app met before).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { after, test } from 'node:test';
import { loadConfig } from '../src/supervisor/config.js';
import { HeldListeners } from '../src/supervisor/held-listeners.js';
import { describeSocket, dupFd } from '../src/native/socket-info.js';
import { appFile } from './helpers/adopt.js';
import { EventLog, fixture, killAll, tempDir } from './helpers/server-process.js';
import { cli, next, pidIn, quit, statusOf, type StartedMaster } from './helpers/supervisor.js';
import { sized } from './helpers/size.js';
import { UdpEchoClient } from './helpers/udp-echo.js';

const run = promisify(execFile);
const RELOADS = sized(10, 4);
const TICK_MS = 4;

const log = new EventLog();
const clients: UdpEchoClient[] = [];
after(() => {
  for (const c of clients) c.close();
  killAll(log.events.map((e) => e.pid));
});

/** A UDP port free on 127.0.0.1 right now. */
async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

/** Writes `baton.yaml` in `dir`: `app`, 2 workers, `listeners` (YAML lines), the app told UDP_PORT. */
function writeUdpConfig(dir: string, app: string, port: number, listeners: string[], env: Record<string, string> = {}): string {
  const cfg = path.join(dir, 'baton.yaml');
  fs.writeFileSync(
    cfg,
    [
      'name: app',
      `app: ${app}`,
      `runDir: ${dir}`,
      'workers: 2',
      ...(listeners.length > 0 ? ['listeners:', ...listeners.map((l) => `  ${l}`)] : []),
      `env: ${JSON.stringify({ UDP_PORT: String(port), BATON_READY_QUIET_MS: '50', ...env })}`,
      'timeouts: { drainMs: 5000, readyMs: 20000, killGraceMs: 1000 }',
      'restart: { initialDelayMs: 50 }',
    ].join('\n'),
  );
  return cfg;
}

/** `baton start -c cfg`; its stdout and stderr (the workers' baton lines are on stderr) feed the log. */
async function start(cfg: string): Promise<StartedMaster> {
  const child = spawn(process.execPath, [cli, 'start', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  log.attach(child.stdout);
  log.attach(child.stderr);
  const pid = child.pid!;
  await log.waitFor((e) => e.event === 'master-ready' && e.pid === pid, `master ${pid} ready`, 40_000);
  return { child, pid, port: 0 };
}

/** Pids of the ready workers of master `pid`. */
async function readyWorkers(dir: string, pid: number): Promise<number[]> {
  return (await statusOf(dir, pid)).workers.filter((w) => w.state === 'ready').map((w) => w.pid);
}

test(`an unmodified UDP app in 2 workers, listener configured: ${RELOADS} baton reloads and a binary upgrade, every datagram answered once`, async (t) => {
  const dir = tempDir('baton-sup-udp-');
  const port = await freeUdpPort();
  const cfg = writeUdpConfig(dir, appFile('udp-echo.mjs'), port, [`dns: { type: udp4, address: 127.0.0.1, port: ${port} }`]);
  const master = await start(cfg);
  t.after(() => killAll([master.pid]));

  const status = await statusOf(dir, master.pid);
  assert.deepEqual(status.listeners, [{ name: 'dns', address: '127.0.0.1', port, type: 'udp4', origin: 'bound' }]);
  const shown = spawnSync(process.execPath, [cli, 'status', '-c', cfg], { encoding: 'utf8' });
  assert.match(shown.stdout, new RegExp(`listener dns: udp4 127\\.0\\.0\\.1:${port} \\(bound\\)`));

  const client = await UdpEchoClient.open('sup');
  clients.push(client);
  let workers = await readyWorkers(dir, master.pid);
  assert.equal(workers.length, 2);
  client.start(port, TICK_MS);
  await client.waitReply((r) => workers.includes(r.generation), 'a reply from a worker');

  /** Worker pids in order of generation; the sequence number sent when each old worker was seen to stop reading. */
  const generations: number[][] = [workers];
  const stoppedAt = new Map<number, number>();
  const watchDraining = (pids: number[], since: number) =>
    Promise.all(
      pids.map((pid) =>
        next(log, `worker ${pid} draining`, (e) => e.event === 'draining' && e.pid === pid, since, 40_000).then(() => {
          // Read in the microtask after the line arrived, before the client's next tick.
          stoppedAt.set(pid, client.sent);
        }),
      ),
    );
  // Datagrams the client sent while each reload ran (from `baton reload` until the old workers drained).
  const sentDuring: number[] = [];
  for (let i = 1; i <= RELOADS; i++) {
    const stopped = watchDraining(workers, log.events.length);
    const sentBefore = client.sent;
    // Not spawnSync: the client's timer keeps sending while the reload runs.
    const reload = await run(process.execPath, [cli, 'reload', '-c', cfg], { encoding: 'utf8', timeout: 60_000 }).catch(
      (err: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(`baton reload ${i}: ${err.message} ${err.stdout ?? ''}${err.stderr ?? ''}`);
      },
    );
    assert.match(reload.stdout, /./, `baton reload ${i} printed its outcome`);
    await stopped;
    sentDuring.push(client.sent - sentBefore);
    const old = workers;
    workers = await readyWorkers(dir, master.pid);
    assert.equal(workers.length, 2, `two workers after reload ${i}`);
    assert.ok(
      workers.every((w) => !old.includes(w)),
      `reload ${i} replaced both workers`,
    );
    generations.push(workers);
    const since = client.sent;
    await client.waitReply((r) => r.seq >= since && workers.includes(r.generation), `a reply from the workers of reload ${i}`);
  }

  // Binary upgrade: the new master inherits the socket, its workers read it; the old master retires.
  const oldMaster = master.pid;
  let mark = log.events.length;
  process.kill(oldMaster, 'SIGUSR2');
  const upgraded = await next(log, 'new master ready', (e) => e.event === 'master-ready' && e.pid !== oldMaster, mark, 40_000);
  const newMaster = upgraded.pid;
  t.after(() => killAll([newMaster]));
  const newStatus = await statusOf(dir, newMaster);
  assert.deepEqual(newStatus.listeners, [{ name: 'dns', address: '127.0.0.1', port, type: 'udp4', origin: 'inherited' }]);
  const newWorkers = await readyWorkers(dir, newMaster);
  mark = log.events.length;
  const stopped = watchDraining(workers, mark);
  process.kill(oldMaster, 'SIGWINCH');
  await stopped;
  generations.push(newWorkers);
  const since = client.sent;
  await client.waitReply((r) => r.seq >= since && newWorkers.includes(r.generation), "a reply from the new master's workers");
  await quit(master);
  assert.equal(pidIn(path.join(dir, 'app.pid')), newMaster);

  client.stop();
  await client.settled();
  assert.deepEqual(client.problems, []);
  assert.deepEqual(client.missing(), [], 'datagrams lost');
  assert.deepEqual(client.duplicated(), [], 'datagrams answered twice');
  // The stream was steady: the client kept sending through every reload (how many depends on the machine).
  assert.ok(
    sentDuring.every((n) => n > 0),
    `datagrams sent while each reload ran: ${JSON.stringify(sentDuring)}`,
  );
  const all = generations.flat();
  const late: string[] = [];
  const byPid = new Map<number, number>();
  for (const [seq, [pid]] of client.answers) {
    assert.ok(all.includes(pid!), `datagram ${seq} answered by pid ${pid}, not a worker`);
    byPid.set(pid!, (byPid.get(pid!) ?? 0) + 1);
    const stop = stoppedAt.get(pid!);
    if (stop !== undefined && seq >= stop) late.push(`${seq} by pid ${pid} (stopped reading at ${stop})`);
  }
  assert.deepEqual(late.slice(0, 10), [], 'read by an old worker after it stopped reading');
  t.diagnostic(
    `${client.sent} datagrams; answered per generation's workers: ${JSON.stringify(generations.map((g) => g.map((p) => byPid.get(p) ?? 0)))}`,
  );
  // Both workers read the one socket: in every generation both answered.
  assert.ok(
    generations.every((g) => g.every((pid) => (byPid.get(pid) ?? 0) > 0)),
    `both workers of a generation answer (${JSON.stringify(generations.map((g) => g.map((p) => byPid.get(p) ?? 0)))})`,
  );

  process.kill(newMaster, 'SIGQUIT');
  await next(log, 'new master exited', (e) => e.event === 'master-exited' && e.pid === newMaster, 0, 30_000);
});

test('an unmodified UDP app without a configured listener: the first worker hands its socket to the master, the second reads it too', async (t) => {
  const dir = tempDir('baton-sup-udp-');
  const port = await freeUdpPort();
  const cfg = writeUdpConfig(dir, appFile('udp-echo.mjs'), port, []);
  const master = await start(cfg);
  t.after(() => killAll([master.pid]));
  const adopted = await next(log, 'listener adopted', (e) => e.event === 'listener-adopted' && e.pid === master.pid, 0);
  assert.deepEqual(adopted.listeners, [{ name: `udp4-127.0.0.1-${port}`, address: '127.0.0.1', port, type: 'udp4', origin: 'adopted' }]);
  const workers = await readyWorkers(dir, master.pid);
  assert.equal(workers.length, 2);
  const client = await UdpEchoClient.open('adopted');
  clients.push(client);
  client.start(port, TICK_MS);
  const second = workers.find((pid) => !log.events.some((e) => e.event === 'listening' && e.pid === pid && e.origin === 'bound'))!;
  await client.waitReply((r) => r.generation === second, `a reply from the second worker (pid ${second})`);
  client.stop();
  await client.settled();
  assert.deepEqual(client.missing(), []);
  assert.deepEqual(client.duplicated(), []);
  await quit(master);
});

test('UDP listener entries: defaults, and errors that name the entry', () => {
  const dir = tempDir('baton-sup-udp-');
  const cfg = path.join(dir, 'baton.yaml');
  const load = (listeners: string) => {
    fs.writeFileSync(cfg, `app: app.mjs\nlisteners:\n${listeners}\n`);
    return loadConfig(cfg);
  };
  assert.deepEqual(load('  dns: { type: udp4, port: 53 }\n  dns6: { type: udp6, address: "::", port: 0 }').listeners, {
    dns: { type: 'udp4', address: '127.0.0.1', port: 53 },
    dns6: { type: 'udp6', address: '::', port: 0 },
  });
  const problem = (listeners: string) => {
    try {
      load(listeners);
    } catch (err) {
      return (err as Error & { code?: string }).code + ' ' + (err as Error).message;
    }
    return 'accepted';
  };
  assert.match(
    problem('  http: { port: 80 }\n  dns: { type: udp5, port: 53 }'),
    /^ERR_BATON_CONFIG_INVALID .*baton\.yaml:4:16: listeners\.dns\.type: a UDP listener's type is udp4 or udp6$/,
  );
  assert.match(problem('  dns: { type: udp4, port: "x" }'), /baton\.yaml:3:28: listeners\.dns\.port: .*expected number/);
  assert.match(problem('  dns: { type: udp4, port: 70000 }'), /listeners\.dns\.port: .*65535/);
  assert.match(problem('  dns: { type: udp4, host: 127.0.0.1, port: 53 }'), /baton\.yaml:3:\d+: listeners\.dns\.host: unknown key 'host'/);
  assert.match(problem('  dns: { type: udp4 }'), /listeners\.dns\.port: /);
});

test("the master's UDP socket: never read by the master, kept across a reload of the same entry, bound anew when it moves", async () => {
  const port = await freeUdpPort();
  const held = await HeldListeners.open({ dns: { type: 'udp4', address: '127.0.0.1', port } }, [], false);
  const [dns] = held.all;
  assert.equal(dns!.description.type, 'dgram');
  assert.equal(dns!.description.port, port);
  // A datagram sent now waits in the kernel: the master does not read it (a worker, later, does).
  const sender = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => sender.send('queued', port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  sender.close();
  const same = await held.reopen({ dns: { type: 'udp4', address: '127.0.0.1', port } });
  held.close();
  // The socket the reload kept is the one the datagram went to: read from a copy of its fd, as a worker would.
  const reader = dgram.createSocket('udp4');
  const got = new Promise<string>((resolve) => reader.once('message', (m) => resolve(m.toString())));
  reader.bind({ fd: dupFd(same.all[0]!.fd) });
  assert.equal(await got, 'queued');
  reader.close();
  const elsewhere = await freeUdpPort();
  const moved = await same.reopen({ dns: { type: 'udp4', address: '127.0.0.1', port: elsewhere } });
  same.close();
  assert.equal(describeSocket(moved.all[0]!.fd).port, elsewhere);
  assert.equal(moved.all[0]!.origin, 'bound');
  moved.close();
});

test("the library's listenDatagram() in supervised workers: the configured socket in both; without it, the second worker's bind fails (EADDRINUSE, listener-unconfigured)", async (t) => {
  const app = fixture('supervised-udp');
  // Configured: both workers read the master's socket.
  const dir = tempDir('baton-sup-udp-');
  const port = await freeUdpPort();
  const cfg = writeUdpConfig(dir, app, port, [`dns: { type: udp4, port: ${port} }`]);
  const master = await start(cfg);
  t.after(() => killAll([master.pid]));
  const workers = await readyWorkers(dir, master.pid);
  assert.equal(workers.length, 2);
  const client = await UdpEchoClient.open('library');
  clients.push(client);
  client.start(port, TICK_MS);
  await client.waitReply((r) => workers.includes(r.generation), 'a reply from a worker');
  client.stop();
  await client.settled();
  assert.deepEqual(client.missing(), []);
  assert.deepEqual(client.duplicated(), []);
  await quit(master);

  // Contrast: the same app, the listener not configured.
  const bare = tempDir('baton-sup-udp-');
  const barePort = await freeUdpPort();
  const bareCfg = writeUdpConfig(bare, app, barePort, []);
  const child = spawn(process.execPath, [cli, 'start', '-c', bareCfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  const bareMaster = child.pid!;
  t.after(() => killAll([bareMaster]));
  log.attach(child.stdout);
  readline.createInterface({ input: child.stderr }).on('line', (line) => log.output.push(`[stderr ${bareMaster}] ${line}`));
  const failed = await next(log, 'a worker bind failing', (e) => e.event === 'udp-failed', 0, 40_000);
  assert.equal(failed.code, 'EADDRINUSE');
  const unconfigured = await next(log, 'listener-unconfigured', (e) => e.event === 'listener-unconfigured' && e.pid === bareMaster, 0);
  assert.equal(unconfigured.listener, 'dns');
  assert.match(String(unconfigured.msg), /listeners: \{ dns: \{ type: udp4, address, port \} \}/);
});

test("socket activation: the master takes systemd's UDP socket; the datagram that started it is answered", async (t) => {
  const dir = tempDir('baton-sup-udp-');
  const port = await freeUdpPort();
  const cfg = writeUdpConfig(dir, appFile('udp-echo.mjs'), port, [`dns: { type: udp4, address: 127.0.0.1, port: ${port} }`]);
  const activator = spawn(
    'systemd-socket-activate',
    ['--datagram', '-l', `127.0.0.1:${port}`, '--fdname=dns', process.execPath, cli, 'start', '-c', cfg],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.after(() => killAll([activator.pid!]));
  log.attach(activator.stdout);
  const bound = new Promise<void>((resolve) =>
    readline.createInterface({ input: activator.stderr }).on('line', (line) => {
      log.output.push(`[activator] ${line}`);
      if (line.startsWith(`Listening on 127.0.0.1:${port}`)) resolve();
    }),
  );
  await bound;
  const client = await UdpEchoClient.open('activated');
  clients.push(client);
  // The first datagram starts the master (it execs into it): it waits in the kernel until a worker reads.
  client.start(port, 20);
  await client.waitReply((r) => r.seq === 0, 'the answer to the datagram that started the master', 40_000);
  // systemd-socket-activate execs into the master: same pid.
  const ready = await log.waitFor((e) => e.event === 'master-ready' && e.pid === activator.pid, 'master ready', 40_000);
  assert.deepEqual((await statusOf(dir, ready.pid)).listeners, [
    { name: 'dns', address: '127.0.0.1', port, type: 'udp4', origin: 'inherited' },
  ]);
  client.stop();
  await client.settled();
  assert.deepEqual(client.missing(), []);
  assert.deepEqual(client.duplicated(), []);
  process.kill(ready.pid, 'SIGQUIT');
  await next(log, 'master exited', (e) => e.event === 'master-exited' && e.pid === ready.pid, 0, 30_000);
});
