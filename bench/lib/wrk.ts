/**
 * Runs wrk (the HTTP load generator from Debian's `wrk` package) and parses its
 * summary: completed requests, socket errors, non-2xx responses, throughput and
 * latency.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface WrkOptions {
  threads: number;
  connections: number;
  /** Run length in seconds; a run started with {@link startWrk} can be stopped earlier. */
  durationS: number;
  /** A wrk Lua script and the arguments its init() gets. */
  script?: { path: string; args: string[] };
}

export interface WrkResult {
  /** Completed responses (wrk's "N requests in …"). */
  requests: number;
  durationS: number;
  requestsPerSec: number;
  errors: { connect: number; read: number; write: number; timeout: number; non2xx: number; total: number };
  latencyMs: { avg: number; max: number; p50: number; p99: number };
  /** wrk's own output, kept for the record. */
  output: string;
}

/** True when a `wrk` binary is on the PATH. */
export function wrkAvailable(): boolean {
  const probe = spawnSync('wrk', ['--version'], { stdio: 'ignore' });
  return (probe.error as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT';
}

/** A running wrk: stop() ends it early (SIGINT, after which wrk prints its summary as usual). */
export interface RunningWrk {
  /** True once wrk ended by itself (its duration elapsed or it failed). */
  readonly ended: boolean;
  stop(): Promise<WrkResult>;
  done: Promise<WrkResult>;
}

export function startWrk(url: string, o: WrkOptions): RunningWrk {
  const script = o.script ? ['-s', o.script.path, url, '--', ...o.script.args] : [url];
  const child = spawn('wrk', [`-t${o.threads}`, `-c${o.connections}`, `-d${o.durationS}s`, '--latency', ...script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let ended = false;
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<WrkResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      ended = true;
      if (code !== 0) reject(new Error(`wrk exited with ${signal ?? `code ${code}`}: ${err.trim() || out.trim()}`));
      else resolve(parseWrk(out));
    });
  });
  return {
    get ended() {
      return ended;
    },
    done,
    stop() {
      if (!ended) child.kill('SIGINT');
      return done;
    },
  };
}

/** Runs wrk for its whole duration. */
export function runWrk(url: string, o: WrkOptions): Promise<WrkResult> {
  return startWrk(url, o).done;
}

const units: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function ms(text: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text ?? '');
  return m ? Number(m[1]) * units[m[2]!]! : NaN;
}

/** Parses wrk's summary (wrk 4.x). Lines wrk leaves out when zero (errors, non-2xx) count as 0. */
export function parseWrk(output: string): WrkResult {
  const total = /(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),/.exec(output);
  if (!total) throw new Error(`cannot parse wrk output:\n${output}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const latency = /Latency\s+(\S+)\s+\S+\s+(\S+)/.exec(output);
  const pct = (p: string) => ms(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(output)?.[1]);
  const errors = {
    connect: Number(socket?.[1] ?? 0),
    read: Number(socket?.[2] ?? 0),
    write: Number(socket?.[3] ?? 0),
    timeout: Number(socket?.[4] ?? 0),
    non2xx: Number(non2xx?.[1] ?? 0),
    total: 0,
  };
  errors.total = errors.connect + errors.read + errors.write + errors.timeout + errors.non2xx;
  return {
    requests: Number(total[1]),
    durationS: ms(total[2]) / 1000,
    requestsPerSec: Number(rps?.[1] ?? NaN),
    errors,
    latencyMs: { avg: ms(latency?.[1]), max: ms(latency?.[2]), p50: pct('50'), p99: pct('99') },
    output,
  };
}

// ---------------------------------------------------------------- timeline

/**
 * wrk's Lua side of {@link startTimelineWrk}. Per thread it counts responses in
 * buckets of the machine's monotonic clock (LuaJIT FFI clock_gettime, the
 * clock of monoMs()), 2xx/3xx and the rest apart, and detects lost requests:
 * wrk keeps one request in flight per connection, so when a request is issued
 * while more than `connections per thread` are unanswered, the difference was
 * lost (its connection failed and wrk reconnected). That places each failure
 * in time; the totals remain wrk's own counters. done() prints one JSON line
 * with wrk's summary, errors, latency percentiles (incl. p99.9) and the buckets.
 */
const TIMELINE_LUA = `
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec *); ]]
local ts = ffi.new("bench_timespec")
local function now_ms() ffi.C.clock_gettime(1, ts) return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end
local threads = {}
function setup(thread) table.insert(threads, thread) end
ok = {} bad = {} lost = {}
local issued, answered, lost_total, bucket_ms, per_thread, req = 0, 0, 0, 250, 1, nil
function init(args)
  bucket_ms = tonumber(args[1]) per_thread = tonumber(args[2]) req = wrk.format()
end
function request()
  issued = issued + 1
  local outstanding = issued - answered - lost_total
  if outstanding > per_thread then
    local b = math.floor(now_ms() / bucket_ms)
    lost[b] = (lost[b] or 0) + outstanding - per_thread
    lost_total = lost_total + outstanding - per_thread
  end
  return req
end
function response(status, headers, body)
  answered = answered + 1
  local b = math.floor(now_ms() / bucket_ms)
  if status < 400 then ok[b] = (ok[b] or 0) + 1 else bad[b] = (bad[b] or 0) + 1 end
end
function done(summary, latency, requests)
  local function merged(name)
    local m = {}
    for _, t in ipairs(threads) do for k, v in pairs(t:get(name)) do m[k] = (m[k] or 0) + v end end
    local parts = {}
    for k, v in pairs(m) do table.insert(parts, string.format('"%.0f":%d', k, v)) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"bytes":%.0f,"durationUs":%.0f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"max":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f},' ..
    '"ok":%s,"bad":%s,"lost":%s}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    merged("ok"), merged("bad"), merged("lost")))
end
`;

/** One bucket of a {@link WrkTimeline}: its start on the monotonic clock and what happened in it. */
export interface WrkBucket {
  at: number;
  ok: number;
  non2xx: number;
  lost: number;
}

/** A wrk run with per-bucket counts and p99.9 (see {@link startTimelineWrk}). */
export interface WrkTimeline extends WrkResult {
  bytes: number;
  /** Latency percentiles (ms) from wrk's own histogram. */
  percentilesMs: { p50: number; p90: number; p99: number; p999: number; mean: number; max: number };
  bucketMs: number;
  buckets: WrkBucket[];
  /**
   * Requests the Lua side saw lost. An estimate: wrk sometimes builds a request it never sends
   * (at the start or the end of a run), so it can be off by one per wrk thread; wrk's own
   * counters are the authoritative totals.
   */
  lostSeen: number;
}

let luaFile: string | undefined;

/** Parses the JSON line the timeline script printed, on top of wrk's own summary. */
export function parseTimeline(output: string, bucketMs: number): WrkTimeline {
  const base = parseWrk(output);
  const line = output.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) throw new Error(`wrk printed no timeline (BENCH_JSON line):\n${output}`);
  const j = JSON.parse(line.slice('BENCH_JSON '.length)) as {
    bytes: number;
    latencyUs: Record<'mean' | 'max' | 'p50' | 'p90' | 'p99' | 'p999', number>;
    ok: Record<string, number>;
    bad: Record<string, number>;
    lost: Record<string, number>;
  };
  const keys = [...new Set([...Object.keys(j.ok), ...Object.keys(j.bad), ...Object.keys(j.lost)].map(Number))].sort((a, b) => a - b);
  const buckets: WrkBucket[] = [];
  // Every bucket from the first to the last, empty ones too: a gap in service is a run of zeros.
  for (let k = keys[0] ?? 0; keys.length && k <= keys.at(-1)!; k++)
    buckets.push({ at: k * bucketMs, ok: j.ok[k] ?? 0, non2xx: j.bad[k] ?? 0, lost: j.lost[k] ?? 0 });
  const ms = (us: number) => us / 1000;
  return {
    ...base,
    bytes: j.bytes,
    percentilesMs: {
      p50: ms(j.latencyUs.p50),
      p90: ms(j.latencyUs.p90),
      p99: ms(j.latencyUs.p99),
      p999: ms(j.latencyUs.p999),
      mean: ms(j.latencyUs.mean),
      max: ms(j.latencyUs.max),
    },
    bucketMs,
    buckets,
    lostSeen: buckets.reduce((a, b) => a + b.lost, 0),
  };
}

/**
 * Starts wrk with the timeline script: the same load as {@link startWrk} (one
 * request in flight per connection), plus responses and lost requests per
 * `bucketMs` and latency p99.9. The Lua callbacks cost wrk some throughput,
 * the same for every server measured.
 */
export function startTimelineWrk(url: string, o: WrkOptions, bucketMs = 100): RunningWrk & { timeline: Promise<WrkTimeline> } {
  if (!luaFile) {
    luaFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-wrk-')), 'timeline.lua');
    fs.writeFileSync(luaFile, TIMELINE_LUA);
  }
  const perThread = Math.floor(o.connections / o.threads);
  const running = startWrk(url, { ...o, script: { path: luaFile, args: [String(bucketMs), String(perThread)] } });
  return Object.assign(running, { timeline: running.done.then((r) => parseTimeline(r.output, bucketMs)) });
}
