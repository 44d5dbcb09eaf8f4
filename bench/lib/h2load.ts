/**
 * Runs h2load (Debian's nghttp2-client) against an h2c (prior knowledge) URL
 * and parses its summary and its per-request log.
 *
 * What h2load does at an upgrade, and the report must say: when a connection
 * ends (GOAWAY, close or reset) the streams in flight on it are counted as
 * failed — including REFUSED_STREAM ones a compliant client would send again
 * (RFC 9113 §8.7) — and in duration mode the client does not open a new
 * connection: that client's load stops. Each run therefore measures one upgrade.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';

export interface H2loadOptions {
  clients: number;
  /** Concurrent streams per client (-m). */
  streams: number;
  durationS: number;
  /** Per-request log (start µs since the epoch, status or -1 for a failed stream, µs to the response's end). */
  logFile: string;
}

export interface H2loadResult {
  total: number;
  started: number;
  done: number;
  succeeded: number;
  /** Streams that did not complete (h2load's "failed"; includes errored and timeout). */
  failed: number;
  errored: number;
  timeout: number;
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  requestsPerSec: number;
  /** From the log: every request's start (ms since the epoch), status (-1: failed) and duration (ms). */
  entries: { startMs: number; status: number; durationMs: number }[];
  output: string;
}

/** Parses h2load's summary (nghttp2 1.5x) and the log it wrote. */
export function parseH2load(output: string, log: string): H2loadResult {
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
  const st = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(output);
  if (!req || !st) throw new Error(`cannot parse h2load output:\n${output}`);
  const n = (m: RegExpExecArray, i: number) => Number(m[i]);
  const entries = log
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [start, status, duration] = line.split('\t').map(Number);
      return { startMs: start! / 1000, status: status!, durationMs: duration! / 1000 };
    });
  return {
    total: n(req, 1),
    started: n(req, 2),
    done: n(req, 3),
    succeeded: n(req, 4),
    failed: n(req, 5),
    errored: n(req, 6),
    timeout: n(req, 7),
    status: { '2xx': n(st, 1), '3xx': n(st, 2), '4xx': n(st, 3), '5xx': n(st, 4) },
    requestsPerSec: Number(rps?.[1] ?? NaN),
    entries,
    output,
  };
}

/** Runs h2load for its whole duration. */
export function runH2load(url: string, o: H2loadOptions): Promise<H2loadResult> {
  const child = spawn(
    'h2load',
    ['-t', '1', '-c', String(o.clients), '-m', String(o.streams), '-D', String(o.durationS), `--log-file=${o.logFile}`, url],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`h2load exited with ${signal ?? `code ${code}`}: ${out.trim()}`));
      try {
        resolve(parseH2load(out, fs.readFileSync(o.logFile, 'utf8')));
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}
