/**
 * A real Prometheus server for tests (Debian's `prometheus` package; .ci/run
 * installs it): started directly, not as a service, with a temporary config,
 * storage directory and a free port, scraping the given targets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './socket-activate.js';

/** Where the binary is; tests are skipped with this reason when it is missing outside CI. */
export const PROMETHEUS = '/usr/bin/prometheus';
export const prometheusSkip =
  !fs.existsSync(PROMETHEUS) && !process.env.CI ? `${PROMETHEUS} is not installed (apt-get install prometheus)` : false;

/** One sample of an instant query: its labels and value. */
export interface Sample {
  metric: Record<string, string>;
  value: number;
  /** Seconds since the epoch. */
  at: number;
}

/** A running Prometheus. */
export class Prometheus {
  readonly #child: ChildProcess;
  readonly url: string;
  readonly output: string[] = [];

  private constructor(child: ChildProcess, url: string) {
    this.#child = child;
    this.url = url;
    for (const s of [child.stdout!, child.stderr!]) s.on('data', (d: Buffer) => this.output.push(d.toString()));
  }

  /** Starts Prometheus in `dir`, scraping `targets` (host:port) every `intervalMs`; resolves once it is ready. */
  static async start(dir: string, targets: string[], intervalMs = 200): Promise<Prometheus> {
    const port = await freePort();
    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(
      config,
      [
        'global:',
        `  scrape_interval: ${intervalMs}ms`,
        `  scrape_timeout: ${intervalMs}ms`,
        'scrape_configs:',
        '  - job_name: baton',
        '    static_configs:',
        `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
        '',
      ].join('\n'),
    );
    const child = spawn(
      PROMETHEUS,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const p = new Prometheus(child, `http://127.0.0.1:${port}`);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited with code ${child.exitCode}: ${p.output.join('')}`);
      try {
        const res = await fetch(`${p.url}/-/ready`);
        await res.arrayBuffer();
        if (res.ok) return p;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`prometheus not ready within 30 s: ${p.output.join('')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** An instant query through the HTTP API (at `time`, seconds since the epoch, or now). */
  async query(promql: string, time?: number): Promise<Sample[]> {
    const u = new URL('/api/v1/query', this.url);
    u.searchParams.set('query', promql);
    if (time !== undefined) u.searchParams.set('time', String(time));
    const res = await fetch(u);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error}`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]), at: r.value[0] }));
  }

  /** The one value of `promql` at `time` (throws unless exactly one series answers). */
  async value(promql: string, time?: number): Promise<number> {
    const r = await this.query(promql, time);
    if (r.length !== 1) throw new Error(`query ${promql}: ${r.length} series: ${JSON.stringify(r)}`);
    return r[0]!.value;
  }

  /**
   * Resolves with the time (seconds since the epoch) of the first successful
   * scrape that began after `afterMs` (epoch ms): from then on a query at
   * that time sees what the target served at or after `afterMs`.
   */
  async scrapedAfter(afterMs: number, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.query('timestamp(up == 1)');
      const at = r[0]?.value;
      // `timestamp()` is the scrape's start time: it began after afterMs.
      if (at !== undefined && at * 1000 > afterMs) return at;
      if (Date.now() > deadline) throw new Error(`no scrape after ${new Date(afterMs).toISOString()}: ${JSON.stringify(r)}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** Stops it (SIGTERM) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const gone = new Promise((r) => this.#child.once('exit', r));
    this.#child.kill('SIGTERM');
    await gone;
  }
}
