/**
 * Connection-migration benchmark (`npm run bench:migration`). From one run it prints,
 * for idle HTTP/1.1 keep-alive connections held by separate client processes:
 * 1. migration time for 1k, 10k and 50k connections (50k only where the per-process
 *    fd limit allows it; otherwise the largest size that fits): from the predecessor
 *    stopping accepting (and from the successor's ready) to the predecessor's last batch
 *    acknowledged ('connections-out'), and to its drain report (every socket closed),
 *    in five upgrades on the same connections (takeover, exec, takeover, exec, takeover);
 *    target: 10k in ≤ 1.5 × the floor below (median of the five);
 * 1b. the floor, in the same run: the same 10k connections (held by a plain Node server,
 *    bench/fixtures/fd-pass-floor.ts) passed to a fresh process over a socketpair in
 *    batches of 253 fds, 16 batches in flight, one ack per batch, each fd added to an
 *    epoll set by the receiver — the fd passing every migration does, with nothing of
 *    baton's (median of 5 passes);
 * 2. the memory (RSS, sampled every 10 ms from /proc/<pid>/status) of both processes
 *    during each upgrade: before, peak, after;
 * 3. that every connection still answers after each upgrade, on the same connection,
 *    served by the new generation (failures and closed connections are counted);
 * 4. for comparison, the same upgrade with `migrate: false`: idle connections are not
 *    moved, the predecessor waits for its keepAliveTimeout to close them, and every
 *    client has to reconnect.
 * A table goes to stdout and everything measured to bench/results/migration-<date>.json.
 *
 * The same file is the client process (`node migration.js client`): it opens raw
 * net sockets, sends one request on each and reads the response, then holds them idle
 * and answers commands (JSON lines on stdin) with events (JSON lines on stdout).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EventLog, benchFixture, monoMs, runBench, spawnFixture, tempDir, type FixtureEvent } from './lib/processes.js';
import { RSS_INTERVAL_MS, RssSampler } from './lib/rss.js';
import { machine, writeResults } from './lib/results.js';
import { median, rounded, table } from './lib/stats.js';

/** Sizes asked for; those above what the fd limit allows are replaced by the largest that fits. */
const SIZES = [1_000, 10_000, 50_000] as const;
const TARGET_SIZE = 10_000;
/** Target: the median migration of TARGET_SIZE connections ≤ this × the floor's median, both from this run. */
const TARGET_RATIO = 1.5;
/** Passes of the floor (bench/fixtures/fd-pass-floor.ts), on the same connections. */
const FLOOR_PASSES = 5;
/** fd limit wanted for every process (a server holds every connection; the bench raises its own, children inherit it). */
const WANTED_NOFILE = 120_000;
/** Connections per client process (each process has its own fd limit). */
const PER_CLIENT_MAX = 5_000;
/** Connects in flight per client process (keeps the listen backlog from overflowing). */
const CONNECT_CONCURRENCY = 64;
/** keepAliveTimeout of the servers: idle connections must outlive the set-up of the largest size. */
const KEEP_ALIVE_MS = 600_000;
/** The comparison without migration: Node's default keepAliveTimeout, and its size. */
const NO_MIGRATE_KEEP_ALIVE_MS = 5_000;
const NO_MIGRATE_SIZE = 10_000;
/**
 * Upgrades per size, on the same connections, alternating paths (timings vary run to run:
 * judged on the median). After the first, the connections are not used: the second moves
 * connections the successor adopted but never read from (Node counts those as active).
 * After every other upgrade, each connection sends one request.
 */
const PATHS: readonly { via: Via; probe: boolean }[] = [
  { via: 'takeover', probe: false },
  { via: 'exec', probe: true },
  { via: 'takeover', probe: true },
  { via: 'exec', probe: true },
  { via: 'takeover', probe: true },
];
const EVENT_TIMEOUT_MS = 60_000;

type Via = 'takeover' | 'exec';
const FAILURES = new Set(['start-failed', 'upgrade-failed', 'upgrade-error', 'client-error', 'floor-error']);

// ================================================================ client process

interface Conn {
  socket: net.Socket;
  buf: string;
  closed: boolean;
  waiter: ((r: Reply | Error) => void) | undefined;
}
interface Reply {
  status: number;
  generation: number;
  connectionClose: boolean;
}

/** Raw request: HTTP/1.1 keep-alive by default. */
const REQUEST = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

function clientMain(): void {
  const emit = (event: string, data: Record<string, unknown> = {}) =>
    process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...data })}\n`);
  const conns: Conn[] = [];
  /** Data that arrived while no request was outstanding (a server must never send any). */
  let unsolicited = 0;
  let closedTotal = 0;
  let errors = 0;

  const parse = (c: Conn) => {
    if (!c.waiter) {
      if (c.buf.length > 0) {
        unsolicited++;
        c.buf = '';
      }
      return;
    }
    const end = c.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = c.buf.slice(0, end).toLowerCase();
    const length = Number(/\r\ncontent-length: *(\d+)/.exec(head)?.[1] ?? 0);
    if (c.buf.length < end + 4 + length) return;
    c.buf = c.buf.slice(end + 4 + length);
    const reply: Reply = {
      status: Number(head.slice(9, 12)),
      generation: Number(/\r\nx-generation: *(\d+)/.exec(head)?.[1] ?? -1),
      connectionClose: /\r\nconnection: *close/.test(head),
    };
    const w = c.waiter;
    c.waiter = undefined;
    w(reply);
  };

  const request = (c: Conn): Promise<Reply> =>
    new Promise((resolve, reject) => {
      if (c.closed) {
        reject(new Error('closed'));
        return;
      }
      c.waiter = (r) => (r instanceof Error ? reject(r) : resolve(r));
      c.socket.write(REQUEST);
    });

  const connect = (port: number, localAddress: string | undefined): Promise<Conn> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
      const c: Conn = { socket, buf: '', closed: false, waiter: undefined };
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => {
        c.buf += d;
        parse(c);
      });
      socket.on('error', (err) => {
        errors++;
        reject(err);
      });
      socket.on('close', () => {
        c.closed = true;
        closedTotal++;
        c.waiter?.(new Error('closed'));
        c.waiter = undefined;
        reject(new Error('closed before connecting'));
      });
      socket.once('connect', () => resolve(c));
    });

  type Tally = { ok: number; failed: number; badStatus: number; connectionClose: number; byGeneration: Record<string, number> };
  const newTally = (): Tally => ({ ok: 0, failed: 0, badStatus: 0, connectionClose: 0, byGeneration: {} });
  const record = async (t: Tally, reply: Promise<Reply>) => {
    try {
      const r = await reply;
      if (r.status !== 200) t.badStatus++;
      if (r.connectionClose) t.connectionClose++;
      t.byGeneration[r.generation] = (t.byGeneration[r.generation] ?? 0) + 1;
      t.ok++;
    } catch {
      t.failed++;
    }
  };

  const commands = readline.createInterface({ input: process.stdin });
  // The bench went away: so do we.
  commands.on('close', () => process.exit(0));
  commands.on('line', (line) => {
    const cmd = JSON.parse(line) as { cmd: string; port?: number; count?: number; localAddress?: string; seq?: number };
    void (async () => {
      try {
        if (cmd.cmd === 'open') {
          const began = performance.now();
          const opened: Conn[] = [];
          const first = newTally();
          let failedConnects = 0;
          const connectErrors: Record<string, number> = {};
          let next = 0;
          // Each worker connects, sends its one request and reads the response before the
          // next connect: paced by the server, so its accept queue never overflows.
          const worker = async () => {
            while (next < cmd.count!) {
              next++;
              let c: Conn;
              try {
                c = await connect(cmd.port!, cmd.localAddress);
              } catch (err) {
                failedConnects++;
                const code = (err as NodeJS.ErrnoException).code ?? 'closed';
                connectErrors[code] = (connectErrors[code] ?? 0) + 1;
                continue;
              }
              opened.push(c);
              await record(first, request(c));
            }
          };
          await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
          conns.push(...opened);
          emit('opened', { seq: cmd.seq, count: opened.length, failedConnects, connectErrors, ...first, ms: performance.now() - began });
        } else if (cmd.cmd === 'probe') {
          const closedBefore = conns.filter((c) => c.closed).length;
          const r = newTally();
          await Promise.all(conns.map((c) => record(r, request(c))));
          emit('probed', { seq: cmd.seq, connections: conns.length, closedBefore, unsolicited, errors, ...r });
        } else if (cmd.cmd === 'status') {
          emit('status', { seq: cmd.seq, connections: conns.length, closed: conns.filter((c) => c.closed).length, unsolicited, errors });
        } else if (cmd.cmd === 'close') {
          // RST, not FIN: no TIME_WAIT left on the client's ports for the next size's connections.
          for (const c of conns) c.socket.resetAndDestroy();
          emit('client-exit', { seq: cmd.seq, closedTotal });
          process.exit(0);
        }
      } catch (err) {
        emit('client-error', { seq: cmd.seq, message: (err as Error).message });
      }
    })();
  });
}

// ================================================================ bench process

const log = new EventLog();
const socketDir = tempDir('baton-bench-migration-');
const out = (line = '') => process.stdout.write(`${line}\n`);
const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
const num = (v: unknown): number => v as number;
const thisScript = fileURLToPath(import.meta.url);

async function waitFor(match: (e: FixtureEvent) => boolean, what: string, since = 0, timeoutMs = EVENT_TIMEOUT_MS): Promise<FixtureEvent> {
  const e = await log.waitFor((ev) => match(ev) || FAILURES.has(ev.event), what, timeoutMs, since);
  if (FAILURES.has(e.event) && !match(e))
    throw new Error(`while waiting for ${what}: pid ${e.pid} reported ${e.event}: ${String(e.code)} ${String(e.message)}`);
  return e;
}

/** Soft and hard RLIMIT_NOFILE of `pid`, from /proc/<pid>/limits. */
function nofile(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const line = fs
    .readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '')
    .split(/\s{2,}/)
    .slice(1, 3)
    .map(Number);
  return { soft: soft ?? 1024, hard: hard ?? 1024 };
}

/**
 * Raises this process's fd limit (root with CAP_SYS_RESOURCE may) so every child —
 * servers and clients — inherits it. Returns the limit in force and why it is not higher.
 */
function raiseFdLimit(): { limit: number; note: string | undefined } {
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${WANTED_NOFILE}:${WANTED_NOFILE}`], { encoding: 'utf8' });
  const limit = nofile().soft;
  if (limit >= WANTED_NOFILE) return { limit, note: undefined };
  const why = (r.error?.message ?? r.stderr ?? '').trim();
  return { limit, note: `could not raise RLIMIT_NOFILE to ${WANTED_NOFILE} (${why || `exit ${String(r.status)}`})` };
}

// ---------------------------------------------------------------- RSS sampling

const rss = new RssSampler();

// ---------------------------------------------------------------- clients

interface Client {
  child: ChildProcess;
  pid: number;
  count: number;
}
let seq = 0;

function spawnClients(total: number): Client[] {
  const n = Math.ceil(total / PER_CLIENT_MAX);
  return Array.from({ length: n }, (_, i) => {
    const count = Math.floor(total / n) + (i < total % n ? 1 : 0);
    const child = spawnFixture(thisScript, {}, log, { stdio: ['pipe', 'pipe', 'pipe'] }, ['client']);
    return { child, pid: child.pid!, count };
  });
}

/** Sends a command to every client and waits for each one's answer event. */
async function command(
  clients: Client[],
  cmd: Record<string, unknown>,
  answer: string,
  perClient?: (c: Client, i: number) => Record<string, unknown>,
) {
  const s = ++seq;
  const since = log.events.length;
  clients.forEach((c, i) => c.child.stdin!.write(`${JSON.stringify({ ...cmd, ...perClient?.(c, i), seq: s })}\n`));
  return Promise.all(
    clients.map((c) => waitFor((e) => e.event === answer && e.pid === c.pid && e.seq === s, `client ${c.pid} ${answer}`, since)),
  );
}

interface Probe {
  connections: number;
  ok: number;
  failed: number;
  badStatus: number;
  connectionClose: number;
  closedBefore: number;
  unsolicited: number;
  byGeneration: Record<string, number>;
}

function sumProbes(events: FixtureEvent[]): Probe {
  const p: Probe = {
    connections: 0,
    ok: 0,
    failed: 0,
    badStatus: 0,
    connectionClose: 0,
    closedBefore: 0,
    unsolicited: 0,
    byGeneration: {},
  };
  for (const e of events) {
    for (const k of ['connections', 'ok', 'failed', 'badStatus', 'connectionClose', 'closedBefore', 'unsolicited'] as const)
      p[k] += num(e[k] ?? 0);
    for (const [g, n] of Object.entries(e.byGeneration as Record<string, number>)) p.byGeneration[g] = (p.byGeneration[g] ?? 0) + n;
  }
  return p;
}

interface Setup {
  opened: number;
  failed: number;
  connectErrors: Record<string, number>;
  ms: number;
  byGeneration: Record<string, number>;
}

async function openConnections(clients: Client[], port: number): Promise<Setup> {
  const began = monoMs();
  // Past the ephemeral port range (about 28k ports towards one address) each client needs its own
  // source address; below it, none: bind(0) to an address gets slow with thousands of ports in use.
  const total = clients.reduce((a, c) => a + c.count, 0);
  const events = await command(clients, { cmd: 'open', port }, 'opened', (c, i) => ({
    count: c.count,
    localAddress: total > 25_000 ? `127.0.0.${10 + i}` : undefined,
  }));
  const opened = events.reduce((a, e) => a + num(e.count), 0);
  const failed = events.reduce((a, e) => a + num(e.failedConnects) + num(e.failed) + num(e.badStatus), 0);
  const byGeneration = sumProbes(events.map((e) => ({ ...e, closedBefore: 0, unsolicited: 0, connections: e.count }))).byGeneration;
  const connectErrors: Record<string, number> = {};
  for (const e of events)
    for (const [code, n] of Object.entries(e.connectErrors as Record<string, number>)) connectErrors[code] = (connectErrors[code] ?? 0) + n;
  return { opened, failed, connectErrors, ms: monoMs() - began, byGeneration };
}

// ---------------------------------------------------------------- servers and upgrades

interface Ready {
  pid: number;
  generation: number;
  port: number;
  readyAt: number;
}

function readyOf(e: FixtureEvent): Ready {
  const marks = e.marks as { ready: number };
  return { pid: e.pid, generation: num(e.generation), port: (e.ports as number[])[0]!, readyAt: marks.ready + num(e.clockOffset) };
}

function serverEnv(name: string, migrate: boolean, keepAliveMs: number): NodeJS.ProcessEnv {
  return {
    BATON_SOCKET_DIR: socketDir,
    BENCH_NAME: name,
    LISTENERS: '1',
    MIGRATE: migrate ? '1' : '0',
    KEEP_ALIVE_TIMEOUT_MS: String(keepAliveMs),
    GENERATION_HEADER: '1',
  };
}

async function startServer(env: NodeJS.ProcessEnv): Promise<Ready> {
  const since = log.events.length;
  const child = spawnFixture(benchFixture('baton-server'), env, log);
  return readyOf(await waitFor((e) => e.event === 'ready' && e.pid === child.pid, `generation 1 (pid ${child.pid}) ready`, since));
}

async function stopServer(pid: number): Promise<void> {
  const exited = waitFor((e) => e.event === 'exit' && e.pid === pid, `pid ${pid} exit`);
  process.kill(pid, 'SIGTERM');
  await exited;
}

interface Migration {
  size: number;
  via: Via;
  generation: number;
  connections: number;
  /** Predecessor stopped accepting (its phase 'draining', on the successor's Ready) → successor's ready() resolved. */
  stopToReadyMs: number;
  /** Predecessor stopped accepting → successor adopted (and acknowledged) its first batch. */
  stopToFirstBatchMs: number;
  /**
   * Predecessor stopped accepting → predecessor got the last batch's acknowledgement: the judged figure. The predecessor
   * closes its own copies of the adopted connections after that (stopToDrainedMs includes it).
   */
  stopToLastAckMs: number;
  /** Successor's ready() resolved → the predecessor's last acknowledgement. */
  readyToLastAckMs: number;
  /** Predecessor stopped accepting → its drain report ('drained': every socket closed, Done sent). */
  stopToDrainedMs: number;
  /** Predecessor stopped accepting → predecessor about to exit. */
  stopToExitMs: number;
  batches: number;
  /** Each batch the successor adopted: stop → its ack sent, and its size. */
  batchTimeline: { atMs: number; adopted: number }[];
  adopted: number;
  refused: number;
  report: { connections: number; drained: number; forced: number; migrated: number; durationMs: number };
  memory: {
    predecessor: { beforeMB: number; peakMB: number; lastMB: number; hwmMB: number };
    successor: { beforeMB: number; peakMB: number; afterMB: number; hwmMB: number };
    samples: number;
  };
  /** Every connection's request after the upgrade; undefined when the connections were left untouched. */
  probe: Probe | undefined;
}

/**
 * Upgrades the server whose current generation is `current` by `via`, with `size`
 * connections held by `clients`, then has every connection send one request.
 */
async function migrate(
  via: Via,
  size: number,
  current: Ready,
  env: NodeJS.ProcessEnv,
  clients: Client[],
  probe: boolean,
): Promise<{ m: Migration; next: Ready }> {
  const since = log.events.length;
  const g = current.generation + 1;
  rss.watch(current.pid);
  let successorPid: number;
  if (via === 'takeover') {
    successorPid = spawnFixture(benchFixture('baton-server'), env, log).pid!;
  } else {
    process.kill(current.pid, 'SIGUSR2');
    successorPid = num(
      (await waitFor((e) => e.event === 'upgrade-start' && e.pid === current.pid, `pid ${current.pid} upgrade-start`, since)).successorPid,
    );
  }
  rss.watch(successorPid);
  const readyEv = await waitFor((e) => e.event === 'ready' && e.generation === g, `generation ${g} ready`, since);
  if (readyEv.origin !== via) throw new Error(`generation ${g} started as '${String(readyEv.origin)}', expected '${via}'`);
  const next = readyOf(readyEv);
  const [draining, drained, exited] = await Promise.all(
    ['draining', 'drained', 'exit'].map((ev) => waitFor((e) => e.event === ev && e.pid === current.pid, `pid ${current.pid} ${ev}`, since)),
  );
  const predHwm = rss.hwm.get(current.pid) ?? NaN;
  // The predecessor is gone: one more successor sample, after the migration settled.
  rss.sample();
  const afterAt = monoMs();
  const stopAt = num(draining!.at);
  const drainedAt = num(drained!.at);
  const batches = log.events.slice(since).filter((e) => e.event === 'connections-in' && e.pid === next.pid);
  const acks = log.events.slice(since).filter((e) => e.event === 'connections-out' && e.pid === current.pid);
  const lastAckAt = acks.length ? num(acks.at(-1)!.at) : NaN;
  const report = drained!.report as Migration['report'];
  const pred = rss.summary(current.pid, stopAt, stopAt, num(exited!.at));
  const succ = rss.summary(next.pid, stopAt, stopAt, afterAt);
  const succHwm = rss.hwm.get(next.pid) ?? NaN;
  rss.forget(current.pid);
  rss.forget(next.pid);

  const probed = probe ? sumProbes(await command(clients, { cmd: 'probe' }, 'probed')) : undefined;
  const m: Migration = {
    size,
    via,
    generation: g,
    connections: report.connections,
    stopToReadyMs: next.readyAt - stopAt,
    stopToFirstBatchMs: batches.length ? num(batches[0]!.at) - stopAt : NaN,
    stopToLastAckMs: lastAckAt - stopAt,
    readyToLastAckMs: lastAckAt - next.readyAt,
    stopToDrainedMs: drainedAt - stopAt,
    stopToExitMs: num(exited!.at) - stopAt,
    batches: batches.length,
    batchTimeline: batches.map((e) => ({ atMs: num(e.at) - stopAt, adopted: num(e.adopted) })),
    adopted: batches.reduce((a, e) => a + num(e.adopted), 0),
    refused: batches.reduce((a, e) => a + num(e.refused), 0),
    report,
    memory: {
      predecessor: { beforeMB: pred.beforeMB, peakMB: pred.peakMB, lastMB: pred.lastMB, hwmMB: predHwm / 1024 },
      successor: { beforeMB: succ.beforeMB, peakMB: succ.peakMB, afterMB: succ.lastMB, hwmMB: succHwm / 1024 },
      samples: pred.n,
    },
    probe: probed,
  };
  return { m, next };
}

/** One size: a fresh server, `size` idle connections, a takeover, then an exec upgrade. */
async function runSize(size: number): Promise<{ setup: Setup; migrations: Migration[] }> {
  const env = serverEnv(`migrate-${size}`, true, KEEP_ALIVE_MS);
  let current = await startServer(env);
  const clients = spawnClients(size);
  progress(`${size}: opening ${size} connections from ${clients.length} client process${clients.length > 1 ? 'es' : ''}`);
  const setup = await openConnections(clients, current.port);
  if (setup.opened !== size || setup.failed > 0)
    throw new Error(`${size}: opened ${setup.opened} connections, ${setup.failed} failed (${JSON.stringify(setup.connectErrors)})`);
  const migrations: Migration[] = [];
  for (const { via, probe } of PATHS) {
    progress(`${size}: ${via} upgrade to generation ${current.generation + 1}`);
    const { m, next } = await migrate(via, size, current, env, clients, probe);
    migrations.push(m);
    current = next;
  }
  await command(clients, { cmd: 'close' }, 'client-exit');
  await stopServer(current.pid);
  return { setup, migrations };
}

interface NoMigration {
  size: number;
  keepAliveTimeoutMs: number;
  setupMs: number;
  /** Predecessor stopped accepting → its drain report (the last idle connection closed by keepAliveTimeout). */
  stopToDrainedMs: number;
  report: Migration['report'];
  /** Connections the server had closed by the time the drain ended (each client must reconnect). */
  closedByServer: number;
  probe: Probe;
}

/** The comparison: migrate: false, Node's default keepAliveTimeout. */
async function runWithoutMigration(size: number): Promise<NoMigration> {
  const env = serverEnv(`nomigrate-${size}`, false, NO_MIGRATE_KEEP_ALIVE_MS);
  const current = await startServer(env);
  const clients = spawnClients(size);
  progress(`no migration: ${size} connections, keepAliveTimeout ${NO_MIGRATE_KEEP_ALIVE_MS} ms, takeover`);
  const setup = await openConnections(clients, current.port);
  const since = log.events.length;
  spawnFixture(benchFixture('baton-server'), env, log);
  const next = readyOf(await waitFor((e) => e.event === 'ready' && e.generation === 2, 'generation 2 ready', since));
  const [draining, drained] = await Promise.all(
    ['draining', 'drained'].map((ev) => waitFor((e) => e.event === ev && e.pid === current.pid, `pid ${current.pid} ${ev}`, since)),
  );
  await waitFor((e) => e.event === 'exit' && e.pid === current.pid, `pid ${current.pid} exit`, since);
  const status = await command(clients, { cmd: 'status' }, 'status');
  const probe = sumProbes(await command(clients, { cmd: 'probe' }, 'probed'));
  await command(clients, { cmd: 'close' }, 'client-exit');
  await stopServer(next.pid);
  return {
    size,
    keepAliveTimeoutMs: NO_MIGRATE_KEEP_ALIVE_MS,
    setupMs: setup.ms,
    stopToDrainedMs: num(drained!.at) - num(draining!.at),
    report: drained!.report as Migration['report'],
    closedByServer: status.reduce((a, e) => a + num(e.closed), 0),
    probe,
  };
}

interface Floor {
  size: number;
  setupMs: number;
  /** Each pass: first sendmsg → last batch acknowledged. */
  passes: { ms: number; fds: number; batches: number }[];
  median: number;
}

/** The floor: `size` connections held by a plain Node server, passed FLOOR_PASSES times to a fresh receiver. */
async function runFloor(size: number): Promise<Floor> {
  const since = log.events.length;
  const holder = spawnFixture(benchFixture('fd-pass-floor'), {}, log, { stdio: ['pipe', 'pipe', 'pipe'] });
  const listening = await waitFor((e) => e.event === 'listening' && e.pid === holder.pid, `floor holder ${holder.pid} listening`, since);
  const clients = spawnClients(size);
  progress(`floor: ${size} connections held by a plain Node server, ${FLOOR_PASSES} passes of their fds`);
  const setup = await openConnections(clients, num(listening.port));
  if (setup.opened !== size || setup.failed > 0) throw new Error(`floor: opened ${setup.opened} connections, ${setup.failed} failed`);
  const passes: Floor['passes'] = [];
  for (let i = 0; i < FLOOR_PASSES; i++) {
    const s = ++seq;
    const from = log.events.length;
    holder.stdin!.write(`${JSON.stringify({ cmd: 'pass', seq: s })}\n`);
    const e = await waitFor((ev) => ev.event === 'passed' && ev.pid === holder.pid && ev.seq === s, `floor pass ${i + 1}`, from);
    if (num(e.fds) !== size) throw new Error(`floor: passed ${num(e.fds)} fds, expected ${size}`);
    passes.push({ ms: num(e.ms), fds: num(e.fds), batches: num(e.batches) });
  }
  await command(clients, { cmd: 'close' }, 'client-exit');
  const exited = new Promise((resolve) => holder.once('exit', resolve));
  holder.stdin!.end();
  await exited;
  return { size, setupMs: setup.ms, passes, median: median(passes.map((p) => p.ms)) };
}

// ---------------------------------------------------------------- output

/** The judged figure: median of stop → last ack over the upgrades of the target size, against the floor's median. */
function targetFigures(
  ms: Migration[],
  floor: Floor | undefined,
): { n: number; median: number; best: number; worst: number; floorMs: number; ratio: number; pass: boolean | null } {
  const v = ms.map((m) => m.stopToLastAckMs);
  const med = median(v);
  const floorMs = floor?.median ?? NaN;
  const ratio = med / floorMs;
  return {
    n: v.length,
    median: med,
    best: Math.min(...v),
    worst: Math.max(...v),
    floorMs,
    ratio,
    pass: floor ? ratio <= TARGET_RATIO : null,
  };
}

const verdict = (pass: boolean) => (pass ? 'PASS' : 'MISS');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '–');
const f0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '–');

function printMigrations(ms: Migration[], sizeNote: string | undefined, floor: Floor | undefined): void {
  out('1. Migration time of idle HTTP/1.1 keep-alive connections (ms; one upgrade each)');
  out(
    table(
      [
        'connections',
        'path',
        'gen',
        'stop → ready',
        'stop → 1st batch in',
        'stop → last ack',
        'ready → last ack',
        'µs/conn',
        'stop → drained',
        'batches',
        'migrated',
        'drained/forced',
      ],
      ms.map((m) => [
        String(m.size),
        m.via,
        String(m.generation),
        f1(m.stopToReadyMs),
        f1(m.stopToFirstBatchMs),
        f1(m.stopToLastAckMs),
        f1(m.readyToLastAckMs),
        f1((m.stopToLastAckMs * 1000) / m.size),
        f1(m.stopToDrainedMs),
        String(m.batches),
        `${m.report.migrated}/${m.connections}`,
        `${m.report.drained}/${m.report.forced}`,
      ]),
    ),
  );
  out("   stop = the predecessor stops accepting (phase draining, on the successor's Ready); ready = the successor's ready()");
  out("   resolved (it waits for the predecessor's Draining); 1st batch in = the successor adopted and acknowledged its first");
  out("   batch; last ack = the predecessor got the last batch's acknowledgement (it closes its own copies of the adopted");
  out('   sockets after that); drained = its drain report (every socket closed). Clocks: CLOCK_MONOTONIC, shared by all processes.');
  if (sizeNote) out(`   ${sizeNote}`);
  const target = ms.filter((m) => m.size === TARGET_SIZE);
  if (floor) {
    out(
      `   floor (same run): ${floor.size} connections' fds passed by a plain Node process to a fresh one, batches of 253, 16 in flight,` +
        ` each fd added to an epoll set: ${floor.passes.map((p) => f1(p.ms)).join(', ')} ms → median ${f1(floor.median)} ms`,
    );
  }
  if (target.length > 0) {
    const t = targetFigures(target, floor);
    out(
      `   target: ${TARGET_SIZE} connections (stop → last ack, median of ${t.n} upgrades) ≤ ${TARGET_RATIO} × the floor: ` +
        `${f1(t.median)} ms = ${Number.isFinite(t.ratio) ? t.ratio.toFixed(2) : '–'} × ${f1(t.floorMs)} ms ` +
        `${t.pass === null ? '(no floor measured)' : verdict(t.pass)} (best ${f1(t.best)}, worst ${f1(t.worst)} ms)`,
    );
  }
  out();
  out("2. Memory during the upgrade (RSS MB, sampled every 10 ms; hwm = VmHWM, the process's lifetime peak)");
  out(
    table(
      [
        'connections',
        'path',
        'pred. before',
        'pred. peak',
        'pred. last',
        'pred. hwm',
        'succ. before',
        'succ. peak',
        'succ. after',
        'succ. hwm',
        'samples',
      ],
      ms.map((m) => {
        const p = m.memory.predecessor;
        const s = m.memory.successor;
        return [
          String(m.size),
          m.via,
          f1(p.beforeMB),
          f1(p.peakMB),
          f1(p.lastMB),
          f1(p.hwmMB),
          f1(s.beforeMB),
          f1(s.peakMB),
          f1(s.afterMB),
          f1(s.hwmMB),
          String(m.memory.samples),
        ];
      }),
    ),
  );
  out('   before = last sample before the predecessor stopped accepting; peak = max from then until the predecessor exited');
  out('   (successor: until just after); pred. last = its last sample before exit; succ. after = once the predecessor was gone.');
  out();
  out('3. Every connection sends one request after the upgrade, on the same connection (not after the first of each size:');
  out('   the next upgrade moves connections the successor adopted and never read from)');
  out(
    table(
      [
        'connections',
        'path',
        'gen',
        'answered',
        'by new generation',
        'failed',
        'closed before',
        'Connection: close',
        'non-200',
        'unsolicited',
      ],
      ms.map((m) => {
        const p = m.probe;
        if (!p) return [String(m.size), m.via, String(m.generation), 'untouched', ...Array<string>(6).fill('–')];
        return [
          String(m.size),
          m.via,
          String(m.generation),
          `${p.ok}/${p.connections}`,
          String(p.byGeneration[m.generation] ?? 0),
          String(p.failed),
          String(p.closedBefore),
          String(p.connectionClose),
          String(p.badStatus),
          String(p.unsolicited),
        ];
      }),
    ),
  );
  const failures = ms.reduce(
    (a, m) => a + (m.probe ? m.probe.failed + m.probe.badStatus + (m.probe.connections - (m.probe.byGeneration[m.generation] ?? 0)) : 0),
    0,
  );
  const notMigrated = ms.reduce((a, m) => a + (m.size - m.report.migrated), 0);
  out(`   failed or not served by the new generation: ${failures} (target 0): ${verdict(failures === 0)}`);
  out(`   connections not migrated, over all ${ms.length} upgrades: ${notMigrated} (target 0): ${verdict(notMigrated === 0)}`);
  out();
}

function printNoMigration(n: NoMigration): void {
  out(
    `4. Without migration (migrate: false, keepAliveTimeout ${n.keepAliveTimeoutMs} ms = Node's default), ${n.size} idle connections, takeover`,
  );
  out(
    `   stop → drained: ${f0(n.stopToDrainedMs)} ms (bounded by keepAliveTimeout; connections opened over ${f0(n.setupMs)} ms before the upgrade);` +
      ` drain report: ${n.report.drained} drained, ${n.report.forced} forced, ${n.report.migrated} migrated`,
  );
  out(
    `   the server closed ${n.closedByServer}/${n.size} idle connections (each client must reconnect); ` +
      `afterwards ${n.probe.ok}/${n.probe.connections} still answered on their connection`,
  );
  out();
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const startedAt = new Date();
  const began = monoMs();
  const cpu = os.cpus();
  const fd = raiseFdLimit();
  out(`baton connection-migration benchmark — ${startedAt.toISOString()}`);
  const loadBefore = os.loadavg()[0]!;
  out(
    `node ${process.version}, ${os.platform()} ${os.release()}, ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, RLIMIT_NOFILE ${fd.limit}, ` +
      `load average ${loadBefore.toFixed(2)} (other work on the machine skews the timings)`,
  );
  out();
  // A server process holds every connection plus its listener, channel and Node's own fds.
  const fit = Math.floor((fd.limit - 1_000) / 1_000) * 1_000;
  // BENCH_SIZES=10000,… measures only those sizes (for profiling one of them).
  const asked = process.env.BENCH_SIZES ? process.env.BENCH_SIZES.split(',').map(Number) : [...SIZES];
  const sizes = [...new Set(asked.map((s) => Math.min(s, fit)))];
  const skipped = asked.filter((s) => s > fit);
  const sizeNote = skipped.length
    ? `${skipped.join(', ')} connections: not possible here — a server process holds every connection and its fd limit is ${fd.limit}` +
      ` (${fd.note ?? 'not raised'}); measured ${fit} instead (the most that fits).`
    : undefined;
  if (sizeNote) progress(sizeNote);

  const runs: { size: number; setup: Setup; migrations: Migration[] }[] = [];
  let floor: Floor | undefined;
  // The floor is measured at the target size (or, when BENCH_SIZES leaves it out, the largest size).
  const floorSize = sizes.includes(TARGET_SIZE) ? TARGET_SIZE : Math.max(...sizes);
  for (const size of sizes) {
    runs.push({ size, ...(await runSize(size)) });
    // The floor right after baton's migrations of the same size, on the same machine state.
    if (size === floorSize && process.env.BENCH_SKIP_FLOOR !== '1') floor = await runFloor(size);
  }
  const migrations = runs.flatMap((r) => r.migrations);
  printMigrations(migrations, sizeNote, floor);
  const noMigration = process.env.BENCH_SKIP_NO_MIGRATE === '1' ? undefined : await runWithoutMigration(Math.min(NO_MIGRATE_SIZE, fit));
  if (noMigration) printNoMigration(noMigration);
  // With NODE_DEBUG (e.g. baton:migrate), the servers' debug lines.
  if (process.env.NODE_DEBUG) for (const line of log.output.filter((l) => l.startsWith('[stderr'))) progress(line);

  const target = migrations.filter((m) => m.size === TARGET_SIZE);
  const results = rounded({
    benchmark: 'migration',
    date: startedAt.toISOString(),
    durationS: (monoMs() - began) / 1000,
    environment: {
      loadAverage1mBefore: loadBefore,
      loadAverage1mAfter: os.loadavg()[0],
      ...machine(),
      nofile: fd.limit,
      nofileNote: fd.note,
    },
    settings: { SIZES, sizes, PER_CLIENT_MAX, CONNECT_CONCURRENCY, KEEP_ALIVE_MS, RSS_INTERVAL_MS, NO_MIGRATE_KEEP_ALIVE_MS, FLOOR_PASSES },
    sizeNote,
    setup: runs.map((r) => ({ size: r.size, ...r.setup })),
    migrations,
    floor,
    target: {
      size: TARGET_SIZE,
      maxRatio: TARGET_RATIO,
      judgedOn:
        `predecessor stops accepting → its last batch acknowledged; median of the ${TARGET_SIZE}-connection upgrades, ` +
        `against the median of the floor's passes (first sendmsg → last ack) in the same run`,
      ...(target.length ? targetFigures(target, floor) : { pass: null }),
    },
    noMigration,
  });
  const file = writeResults('migration', startedAt, results);
  out(`total run ${results.durationS.toFixed(1)} s; results: ${file}`);
}

if (process.argv[2] === 'client') {
  clientMain();
} else {
  await runBench(main, log, () => {
    rss.stop();
    fs.rmSync(socketDir, { recursive: true, force: true });
  });
}
