/**
 * Server CPU time per unit of work (an HTTP/1.1 request, an h2c stream, a
 * WebSocket message echoed), compared between server variants in ABBA rounds.
 * Shared by `npm run bench:observe` (observability on/off) and `npm run
 * bench:steady` (plain Node / library / `baton run`).
 *
 * Each run sends a fixed amount of work (not a fixed time): a run slowed by the
 * machine's other load does the same work, so CPU per unit stays comparable.
 * CPU is the time the server's processes ran (every thread, {@link cpuSecondsFine}),
 * which the machine's other load disturbs far less than throughput.
 */
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import { Pool } from 'undici';
import WebSocket from 'ws';
import { median } from './stats.js';
import { cpuSeconds } from './throughput.js';

/**
 * CPU seconds a process has used so far, summed over its threads from the
 * scheduler's own account (`se.sum_exec_runtime` of /proc/<pid>/task/<tid>/sched,
 * nanosecond resolution): /proc/<pid>/stat counts in clock ticks (10 ms), too
 * coarse for runs of a second. Falls back to /proc/<pid>/stat where the file is
 * not there. Threads that exited are not counted (Node's are long-lived).
 */
export function cpuSecondsFine(pid: number): number {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return cpuSeconds(pid);
  }
  let ms = 0;
  for (const tid of tids) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/task/${tid}/sched`, 'utf8');
    } catch {
      continue; // the thread exited meanwhile
    }
    const m = /se\.sum_exec_runtime\s*:\s*([\d.]+)/.exec(text);
    if (!m) return cpuSeconds(pid);
    ms += Number(m[1]);
  }
  return ms / 1000;
}

/** The three loads. */
export type Protocol = 'h1' | 'h2c' | 'ws';

/** Where a server variant is reached and which processes' CPU counts. */
export interface CostServer {
  /** HTTP/1.1 port (also the WebSocket echo at /ws). */
  port: number;
  /** h2c (prior knowledge) port, when the variant has one. */
  h2cPort?: number;
  /** Every process whose CPU time is the variant's (a `baton run` wrapper and its app). */
  pids: number[];
}

/** Completed and failed units of one load run. */
export interface LoadResult {
  units: number;
  failed: number;
}

/** How a load is shaped: `connections` concurrent connections (h2c: each with `streams` concurrent streams). */
export interface LoadShape {
  connections: number;
  /** h2c only: concurrent streams per connection (default 10). */
  streams?: number;
}

/** HTTP/1.1: `total` GETs over `connections` keep-alive connections (undici), one request at a time each. */
export async function loadH1(port: number, shape: LoadShape, total: number): Promise<LoadResult> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: shape.connections, pipelining: 1 });
  let left = total;
  let units = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: shape.connections }, async () => {
      while (left-- > 0) {
        try {
          const res = await pool.request({ path: '/', method: 'GET' });
          await res.body.dump();
          units++;
        } catch {
          failed++;
        }
      }
    }),
  );
  await pool.close();
  return { units, failed };
}

/** h2c: `total` GET streams over `connections` sessions (node:http2), `streams` in flight on each. */
export async function loadH2c(port: number, shape: LoadShape, total: number): Promise<LoadResult> {
  let left = total;
  let units = 0;
  let failed = 0;
  const sessions = Array.from({ length: shape.connections }, () => http2.connect(`http://127.0.0.1:${port}`));
  const one = (session: http2.ClientHttp2Session) =>
    new Promise<void>((resolve) => {
      const req = session.request({ ':path': '/' });
      req.on('response', () => undefined);
      req.on('data', () => undefined);
      req.on('end', () => {
        units++;
        resolve();
      });
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end();
    });
  try {
    await Promise.all(
      sessions.flatMap((session) =>
        Array.from({ length: shape.streams ?? 10 }, async () => {
          while (left-- > 0) await one(session);
        }),
      ),
    );
  } finally {
    for (const s of sessions) s.close();
  }
  return { units, failed };
}

/** WebSocket: `total` messages echoed over `connections` WebSockets (ws) to /ws, one in flight on each. */
export async function loadWs(port: number, shape: LoadShape, total: number): Promise<LoadResult> {
  let left = total;
  let units = 0;
  let failed = 0;
  const payload = Buffer.from('hello websocket\n');
  await Promise.all(
    Array.from(
      { length: shape.connections },
      () =>
        new Promise<void>((resolve) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
          const next = () => {
            if (left-- > 0) ws.send(payload);
            else ws.close();
          };
          ws.on('open', next);
          ws.on('message', () => {
            units++;
            next();
          });
          ws.on('error', () => {
            failed++;
          });
          ws.on('close', () => resolve());
        }),
    ),
  );
  return { units, failed };
}

const LOADS: Record<Protocol, (port: number, shape: LoadShape, total: number) => Promise<LoadResult>> = {
  h1: loadH1,
  h2c: loadH2c,
  ws: loadWs,
};

function portFor(server: CostServer, protocol: Protocol): number {
  if (protocol !== 'h2c') return server.port;
  if (server.h2cPort === undefined) throw new Error('this server variant has no h2c port');
  return server.h2cPort;
}

/** One run of one variant. */
export interface CostRun {
  round: number;
  variant: string;
  units: number;
  failed: number;
  cpuUsPerUnit: number;
}

/** A comparison of variants against a baseline on one protocol. */
export interface CostComparison {
  protocol: Protocol;
  settings: { rounds: number; units: number } & LoadShape;
  runs: CostRun[];
  /** Baseline variant the ratios are relative to. */
  baseline: string;
  variants: Record<
    string,
    {
      /** CPU µs per unit in each round. */
      cpuUsPerUnit: number[];
      /** Median over the rounds. */
      medianCpuUsPerUnit: number;
      /** This variant ÷ the baseline in each round (the runs of a round are back to back). */
      roundRatios: number[];
      /** Median of the round ratios: the judged figure (1 = costs nothing more than the baseline). */
      ratio: number;
      /** Lowest and highest round ratio: the spread. */
      ratioRange: [number, number];
    }
  >;
  /** 1-minute load average before and after. */
  loadAverage: { start: number; end: number };
}

/**
 * Runs `rounds` rounds of one run per variant in ABBA order (odd rounds in the
 * given order, even rounds reversed), each `units` units of `protocol` load,
 * after a warm-up run per variant (`warmupUnits`, default `units`) so every
 * server's code is optimised before anything is measured.
 */
export async function compareCpuCost(
  servers: Record<string, CostServer>,
  o: { protocol: Protocol; baseline: string; rounds: number; units: number; warmupUnits?: number } & LoadShape,
  progress: (line: string) => void = () => undefined,
): Promise<CostComparison> {
  const names = Object.keys(servers);
  const load = LOADS[o.protocol];
  const shape: LoadShape = { connections: o.connections, streams: o.streams };
  const loadStart = os.loadavg()[0]!;
  for (const name of names) await load(portFor(servers[name]!, o.protocol), shape, o.warmupUnits ?? o.units);
  const runs: CostRun[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    const order = round % 2 === 1 ? names : [...names].reverse();
    for (const variant of order) {
      const server = servers[variant]!;
      const cpu = () => server.pids.reduce((sum, pid) => sum + cpuSecondsFine(pid), 0);
      const before = cpu();
      const r = await load(portFor(server, o.protocol), shape, o.units);
      const used = cpu() - before;
      const cpuUsPerUnit = (used * 1e6) / Math.max(1, r.units);
      runs.push({ round, variant, units: r.units, failed: r.failed, cpuUsPerUnit });
      progress(`  ${o.protocol} round ${round} ${variant}: ${r.units} done, ${r.failed} failed, ${cpuUsPerUnit.toFixed(2)} µs CPU each`);
    }
  }
  const of = (v: string) => runs.filter((r) => r.variant === v).map((r) => r.cpuUsPerUnit);
  const base = of(o.baseline);
  const variants: CostComparison['variants'] = {};
  for (const name of names) {
    const own = of(name);
    const roundRatios = own.map((x, i) => x / base[i]!);
    variants[name] = {
      cpuUsPerUnit: own,
      medianCpuUsPerUnit: median(own),
      roundRatios,
      ratio: median(roundRatios),
      ratioRange: [Math.min(...roundRatios), Math.max(...roundRatios)],
    };
  }
  return {
    protocol: o.protocol,
    settings: { rounds: o.rounds, units: o.units, ...shape },
    runs,
    baseline: o.baseline,
    variants,
    loadAverage: { start: loadStart, end: os.loadavg()[0]! },
  };
}

const UNIT: Record<Protocol, string> = { h1: 'request', h2c: 'stream', ws: 'message' };

/** One line per variant: CPU per unit, ratio to the baseline (median of the rounds) and its spread. */
export function formatCpuCost(c: CostComparison): string {
  const base = c.variants[c.baseline]!;
  const lines = [
    `${c.protocol}: server CPU µs per ${UNIT[c.protocol]}, ${c.settings.rounds} ABBA rounds of ${c.settings.units}, ` +
      `${c.settings.connections} connections${c.protocol === 'h2c' ? ` × ${c.settings.streams ?? 10} streams` : ''}; ` +
      `load average ${c.loadAverage.start.toFixed(2)} → ${c.loadAverage.end.toFixed(2)} (${os.cpus().length} cores)`,
  ];
  for (const [name, v] of Object.entries(c.variants)) {
    const cpu = `${v.medianCpuUsPerUnit.toFixed(2)} µs`;
    if (name === c.baseline) lines.push(`  ${name.padEnd(8)} ${cpu} (baseline)`);
    else
      lines.push(
        `  ${name.padEnd(8)} ${cpu}  ratio ${v.ratio.toFixed(3)} × ${c.baseline} ${base.medianCpuUsPerUnit.toFixed(2)} µs ` +
          `(rounds ${v.ratioRange[0].toFixed(3)}–${v.ratioRange[1].toFixed(3)}: ${v.roundRatios.map((x) => x.toFixed(3)).join(', ')})`,
      );
  }
  return lines.join('\n');
}
