/**
 * Upgrade-time benchmark (`npm run bench:upgrade-time`): how long from the
 * upgrade action until the new generation answers a client, against the floor
 * every Node-based upgrade shares — a bare `node app.js` started until it
 * answers — measured in the same run, rounds interleaved (bare, then each
 * path, ROUNDS times), medians compared.
 *
 * "Answers" is seen from a client: a fresh connection every millisecond, one
 * `GET /` each, until a response comes from a process of the new generation
 * (the hello fixtures add `x-pid` with PID_HEADER=1). Paths:
 * - `bare`: spawn `node plain-server.js` → its first response (the floor);
 * - library `takeover` (a second process of bench/fixtures/baton-server.js)
 *   and `exec` (SIGUSR2 to it): the action → the successor's first response;
 * - `baton run` run again (takeover) and signalled (SIGUSR2 to `baton run`),
 *   with the plain app unmodified;
 * - `baton reload` and `baton upgrade` of `baton start` with one worker.
 * Targets (issue 17): library and `baton run` ≤ 1.15 × the floor, reload ≤
 * 1.5 ×, upgrade ≤ 2 × (new master's worker answering). For the library
 * paths it also prints where each successor's time went, from the start-up
 * marks the fixture reports (boot, module loading, start(), listen(), ready()).
 * Results go to bench/results/upgrade-time-<date>.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BatonFixtures, type Ready } from './lib/baton-fixture.js';
import { EventLog, benchFixture, killAll, monoMs, pidsOf, runBench, tempDir } from './lib/processes.js';
import { machine, writeResults } from './lib/results.js';
import { median, rounded, table } from './lib/stats.js';
import { freePort } from './lib/system.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PROBE_EVERY_MS = 1;
const PROBE_TIMEOUT_MS = 30_000;
const TARGETS: Record<string, number> = {
  'library takeover': 1.15,
  'library exec': 1.15,
  'baton run again': 1.15,
  'baton run SIGUSR2': 1.15,
  'baton reload': 1.5,
  'baton upgrade': 2,
};

// Every hello fixture (and so every worker and app process below) adds x-pid.
process.env.PID_HEADER = '1';
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const log = new EventLog();
const dir = tempDir('baton-bench-upgrade-time-');
const out = (line = '') => process.stdout.write(`${line}\n`);
const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
const children: ChildProcess[] = [];

/** One `GET /` on a fresh connection: the pid that answered, or undefined (refused, reset, no answer). */
function ask(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (pid: number | undefined) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: string) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end).toLowerCase();
      done(head.startsWith('http/1.1 200') ? Number(/\r\nx-pid: *(\d+)/.exec(head)?.[1] ?? NaN) : undefined);
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(undefined));
    socket.setTimeout(2_000, () => done(undefined));
  });
}

/** Asks every PROBE_EVERY_MS until a process not in `old` answers; resolves with that moment and pid. */
async function firstAnswer(port: number, old: ReadonlySet<number>): Promise<{ at: number; pid: number }> {
  const deadline = monoMs() + PROBE_TIMEOUT_MS;
  while (monoMs() < deadline) {
    const pid = await ask(port);
    if (pid !== undefined && Number.isFinite(pid) && !old.has(pid)) return { at: monoMs(), pid };
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
  }
  throw new Error(`no answer from a new process on port ${port} within ${PROBE_TIMEOUT_MS} ms`);
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number): Promise<void> {
  while (alive(pid)) await new Promise((r) => setTimeout(r, 5));
}

function spawnNode(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  log.attach(child.stdout!);
  children.push(child);
  return child;
}

// ---------------------------------------------------------------- paths

/** The floor: a bare `node app.js`, spawned until it answers. */
async function bare(port: number): Promise<number> {
  const started = monoMs();
  const child = spawnNode([benchFixture('plain-server')], { PORT: String(port) });
  const { at } = await firstAnswer(port, new Set());
  child.kill('SIGKILL');
  await exited(child);
  return at - started;
}

/** Where a library successor's time went (ms), from its own start-up marks (bench/fixtures/baton-server.ts). */
interface Steps {
  /** The upgrade action → the first line of the successor's script (Node boot; for exec also the predecessor's spawn). */
  boot: number;
  /** Loading baton, http, http2, ws and the handler. */
  load: number;
  /** start(): upgrade socket, Hello, Listeners, State. */
  start: number;
  listen: number;
  /** ready(): Ready → the predecessor's Draining. */
  ready: number;
}
const STEPS: (keyof Steps)[] = ['boot', 'load', 'start', 'listen', 'ready'];
const steps: Record<string, Steps[]> = {};

/** The library: generation 1 of baton-server, then ROUNDS upgrades by `via`, one per call of `next()`. */
async function libraryPath(via: 'takeover' | 'exec'): Promise<{ next: () => Promise<number>; stop: () => Promise<void> }> {
  const fixtures = new BatonFixtures(log);
  const env = { BATON_SOCKET_DIR: path.join(dir, `lib-${via}`), BENCH_NAME: `ut-${via}`, LISTENERS: '1' };
  fs.mkdirSync(env.BATON_SOCKET_DIR, { recursive: true, mode: 0o700 });
  let current: Ready = await fixtures.start(env);
  const port = current.port;
  await firstAnswer(port, new Set());
  return {
    async next() {
      const started = monoMs();
      const old = current.pid;
      const answered = firstAnswer(port, new Set([old]));
      const u = await fixtures.upgrade(via, old, current.generation + 1, env);
      const { at } = await answered;
      current = u.successor;
      const m = current.marks;
      (steps[`library ${via}`] ??= []).push({
        boot: m.entry + current.offset - started,
        load: m.startCalled - m.entry,
        start: m.started - m.startCalled,
        listen: m.listened - m.started,
        ready: m.ready - m.listened,
      });
      await gone(old);
      // For exec, the action is the signal: `started` is before it, as a user's `kill -USR2` is.
      return at - started;
    },
    async stop() {
      await fixtures.stop(current.pid).catch(() => undefined);
      killAll([...pidsOf(log), ...fixtures.spawned]);
    },
  };
}

/** `baton run plain-server.js`, upgraded by running it again or by SIGUSR2 to it. */
async function runPath(how: 'again' | 'signal', port: number): Promise<{ next: () => Promise<number>; stop: () => Promise<void> }> {
  const env = { PORT: String(port), BATON_SOCKET_DIR: path.join(dir, `run-${how}`) };
  fs.mkdirSync(env.BATON_SOCKET_DIR, { recursive: true, mode: 0o700 });
  const args = [cli, 'run', '--name', `ut-run-${how}`, benchFixture('plain-server')];
  let wrapper = spawnNode(args, env);
  let app = (await firstAnswer(port, new Set())).pid;
  return {
    async next() {
      const started = monoMs();
      const answered = firstAnswer(port, new Set([app]));
      let next = wrapper;
      if (how === 'again') next = spawnNode(args, env);
      else process.kill(wrapper.pid!, 'SIGUSR2');
      const { at, pid } = await answered;
      const old = app;
      app = pid;
      if (how === 'again') {
        await exited(wrapper);
        wrapper = next;
      }
      await gone(old);
      return at - started;
    },
    async stop() {
      wrapper.kill('SIGTERM');
      await exited(wrapper);
    },
  };
}

/** `baton start` with one worker of the plain app, upgraded by `baton reload` or `baton upgrade`. */
async function supervisorPath(
  command: 'reload' | 'upgrade',
  port: number,
): Promise<{ next: () => Promise<number>; stop: () => Promise<void> }> {
  const runDir = path.join(dir, `sup-${command}`);
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const cfg = path.join(runDir, 'baton.json');
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      name: `ut-${command}`,
      app: benchFixture('plain-server'),
      workers: 1,
      runDir,
      listeners: { http: { host: '127.0.0.1', port } },
      env: { PID_HEADER: '1', PORT: String(port) },
      timeouts: { drainMs: 5_000 },
    }),
  );
  spawnNode([cli, 'start', '-c', cfg]);
  let worker = (await firstAnswer(port, new Set())).pid;
  const cmd = (...a: string[]) => exited(spawnNode([cli, ...a, '-c', cfg]));
  return {
    async next() {
      const started = monoMs();
      const answered = firstAnswer(port, new Set([worker]));
      const done = cmd(command);
      const { at, pid } = await answered;
      await done;
      const old = worker;
      worker = pid;
      await gone(old);
      return at - started;
    },
    async stop() {
      await cmd('stop');
    },
  };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = os.loadavg()[0]!;
  out(`baton upgrade-time benchmark — ${startedAt.toISOString()}`);
  out(
    `node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load average ${loadBefore.toFixed(2)} (other work skews the timings)`,
  );
  out();
  const barePort = await freePort();
  const paths: [string, { next: () => Promise<number>; stop: () => Promise<void> }][] = [];
  progress('starting every path');
  paths.push(['library takeover', await libraryPath('takeover')]);
  paths.push(['library exec', await libraryPath('exec')]);
  paths.push(['baton run again', await runPath('again', await freePort())]);
  paths.push(['baton run SIGUSR2', await runPath('signal', await freePort())]);
  paths.push(['baton reload', await supervisorPath('reload', await freePort())]);
  paths.push(['baton upgrade', await supervisorPath('upgrade', await freePort())]);
  const samples: Record<string, number[]> = { bare: [] };
  for (const [name] of paths) samples[name] = [];
  // A first bare start warms the page cache; it is not counted.
  await bare(barePort);
  for (let r = 1; r <= ROUNDS; r++) {
    progress(`round ${r}/${ROUNDS}`);
    samples.bare!.push(await bare(barePort));
    for (const [name, p] of paths) samples[name]!.push(await p.next());
  }
  for (const [, p] of paths) await p.stop();

  const floor = median(samples.bare!);
  const rows = Object.entries(samples).map(([name, v]) => {
    const m = median(v);
    const target = TARGETS[name];
    const ratio = m / floor;
    return {
      name,
      samples: v,
      median: m,
      ratio,
      target,
      pass: target === undefined ? null : ratio <= target,
    };
  });
  out(`Upgrade action → first answer from the new generation (ms; median of ${ROUNDS}, rounds interleaved)`);
  out(
    table(
      ['path', 'median', '× bare', 'target', 'verdict', 'samples'],
      rows.map((r) => [
        r.name,
        r.median.toFixed(1),
        r.ratio.toFixed(2),
        r.target === undefined ? 'floor' : `≤ ${r.target}`,
        r.pass === null ? '' : r.pass ? 'PASS' : 'MISS',
        r.samples.map((s) => s.toFixed(0)).join(' '),
      ]),
    ),
  );
  out('   bare = `node plain-server.js` spawned → its first answer; answers are seen by a client asking on a fresh connection every 1 ms.');
  out();
  out(`Library successors: where the time went (ms; median of ${ROUNDS}, from the successor's own start-up marks)`);
  const stepRows = Object.entries(steps).map(([name, list]) => [name, ...STEPS.map((k) => median(list.map((x) => x[k])).toFixed(1))]);
  out(table(['path', ...STEPS], stepRows));
  out('   boot = action → first line of the script (Node boot); load = baton, http, http2, ws and the handler; start = start(): upgrade');
  out(
    "   socket, Hello, Listeners, State; listen = listen() of the inherited listener; ready = ready(): Ready → the predecessor's Draining.",
  );
  const results = rounded({
    benchmark: 'upgrade-time',
    date: startedAt.toISOString(),
    environment: { loadAverage1mBefore: loadBefore, loadAverage1mAfter: os.loadavg()[0], ...machine() },
    settings: { ROUNDS, PROBE_EVERY_MS },
    floorMs: floor,
    paths: rows,
    librarySteps: Object.fromEntries(
      Object.entries(steps).map(([name, list]) => [name, Object.fromEntries(STEPS.map((k) => [k, median(list.map((x) => x[k]))]))]),
    ),
  });
  out(`results: ${writeResults('upgrade-time', startedAt, results)}`);
}

await runBench(main, log, () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});
