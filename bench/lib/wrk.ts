/**
 * Runs wrk (the HTTP load generator from Debian's `wrk` package) and parses its
 * summary: completed requests, socket errors, non-2xx responses, throughput and
 * latency.
 */
import { spawn, spawnSync } from 'node:child_process';

export interface WrkOptions {
  threads: number;
  connections: number;
  /** Run length in seconds; a run started with {@link startWrk} can be stopped earlier. */
  durationS: number;
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
  const child = spawn('wrk', [`-t${o.threads}`, `-c${o.connections}`, `-d${o.durationS}s`, '--latency', url], {
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
