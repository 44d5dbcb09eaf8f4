/**
 * The picture of one binary upgrade (`baton upgrade --report FILE`): while
 * the upgrade runs, the masters' status is sampled every
 * {@link SAMPLE_INTERVAL_MS} (connections of each worker, by master and
 * generation; connections cut so far), and each step is marked. At the end
 * the report is written as JSON to FILE and as an SVG timeline next to it
 * (FILE with its extension replaced by `.svg`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { stackedCharts, type Series } from './svg-chart.js';

/**
 * What the recorder reads from a master's status (`baton status --json`; the
 * supervisor's MasterStatus has these fields): declared here, so the report
 * depends on the shape it reads and not on the supervisor.
 */
export interface SampledMaster {
  pid: number;
  phase: string;
  /** The new master this one spawned (a binary upgrade), if any. */
  childPid: number | undefined;
  counters: { forced: number; migrated: number };
  /** Requests this master's workers received, by generation number (its request counters). */
  requests: Record<string, number>;
  workers: readonly { generation?: number | undefined; connections?: number | undefined }[];
}

/** How often the masters are asked for their status during an upgrade. */
const SAMPLE_INTERVAL_MS = 100;

/** One sample of the masters during the upgrade. */
export interface ReportSample {
  /** ms since the upgrade began. */
  t: number;
  /** Open connections by `master <pid> / generation <n>`. */
  connections: Record<string, number>;
  /**
   * Requests received since the previous sample, by `master <pid> / generation <n>` (from the
   * masters' request counters, status `requests`; the first sample has none: it is the base).
   */
  requests: Record<string, number>;
  /** The same as requests per second over the interval. */
  rps: Record<string, number>;
  /** Phase of each master (by pid). */
  phases: Record<string, string>;
  /** Connections cut so far by the masters sampled (their `counters.forced`), since the upgrade began. */
  cut: number;
  /** Requests failed in this interval as baton counts them: at most one per connection cut (the new cuts since the previous sample). */
  failed: number;
  /** Connections migrated so far, since the upgrade began. */
  migrated: number;
}

/** The JSON report. */
export interface UpgradeReportData {
  name: string;
  startedAt: string;
  durationMs: number;
  result: 'done' | 'failed';
  error: string | undefined;
  oldPid: number;
  newPid: number | undefined;
  /** Each step as `baton upgrade` printed it, with its time (ms since the upgrade began). */
  steps: { t: number; step: string }[];
  samples: ReportSample[];
  /**
   * Each master's request counters (status `requests`, by generation) as first and last sampled;
   * the old master's first sample is the base, a new master counts from none. The samples'
   * `requests` add up to `last - first` of each.
   */
  requestCounters: Record<string, { first: Record<string, number>; last: Record<string, number> }>;
  /** Requests received during the upgrade (the sum of every sample's `requests`), and failed as baton counts them. */
  totals: { requests: number; failed: number };
  /** What `baton upgrade` printed as its summary (done only). */
  summary: Record<string, unknown> | undefined;
}

/**
 * Samples the old master (and the new master it names as its child) at once,
 * then every {@link SAMPLE_INTERVAL_MS} until {@link UpgradeRecorder.finish}.
 * `status` asks one master (undefined when it does not answer).
 */
export class UpgradeRecorder {
  readonly #t0 = performance.now();
  readonly #startedAt = new Date();
  readonly #status: (pid: number) => Promise<SampledMaster | undefined>;
  readonly #oldPid: number;
  #newPid: number | undefined;
  readonly #steps: { t: number; step: string }[] = [];
  readonly #samples: ReportSample[] = [];
  readonly #base = new Map<number, { forced: number; migrated: number }>();
  readonly #requests = new Map<number, { first: Record<string, number>; last: Record<string, number> }>();
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<void>;

  constructor(oldPid: number, status: (pid: number) => Promise<SampledMaster | undefined>) {
    this.#oldPid = oldPid;
    this.#status = status;
    this.#sampling = this.#sample().finally(() => this.#schedule());
  }

  /** Marks a step (a line of `baton upgrade`'s progress). */
  mark(step: string): void {
    this.#steps.push({ t: Math.round(performance.now() - this.#t0), step });
  }

  /** Takes a sample now (after the one under way): e.g. of the old master's last counts, before it is told to exit. */
  sampleNow(): Promise<void> {
    this.#sampling = this.#sampling.then(() => this.#sample());
    return this.#sampling;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#sampling = this.#sampling
        .then(() => this.#sample())
        .finally(() => {
          if (this.#timer) this.#schedule();
        });
    }, SAMPLE_INTERVAL_MS);
  }

  async #sample(): Promise<void> {
    const t = Math.round(performance.now() - this.#t0);
    const old = await this.#status(this.#oldPid);
    this.#newPid = old?.childPid ?? this.#newPid;
    const fresh = this.#newPid === undefined ? undefined : await this.#status(this.#newPid);
    const previous = this.#samples.at(-1);
    const sample: ReportSample = { t, connections: {}, requests: {}, rps: {}, phases: {}, cut: 0, failed: 0, migrated: 0 };
    for (const s of [old, fresh]) {
      if (!s) continue;
      sample.phases[String(s.pid)] = s.phase;
      // Counters of a new master start from the old one's: the difference to its first sample is its own.
      const base = this.#base.get(s.pid) ?? { forced: s.counters.forced, migrated: s.counters.migrated };
      this.#base.set(s.pid, base);
      sample.cut += s.counters.forced - base.forced;
      sample.migrated += s.counters.migrated - base.migrated;
      for (const w of s.workers) {
        const key = `master ${s.pid} / generation ${w.generation ?? '?'}`;
        sample.connections[key] = (sample.connections[key] ?? 0) + (w.connections ?? 0);
      }
      this.#countRequests(s, sample);
    }
    // A generation no longer sampled (its workers or its master exited) holds no connections: its line ends at 0.
    for (const [key, n] of Object.entries(previous?.connections ?? {})) {
      if (n > 0 && !(key in sample.connections)) sample.connections[key] = 0;
    }
    sample.failed = Math.max(0, sample.cut - (previous?.cut ?? 0));
    const seconds = previous ? (t - previous.t) / 1000 : 0;
    for (const [key, n] of Object.entries(sample.requests)) sample.rps[key] = seconds > 0 ? Math.round(n / seconds) : 0;
    this.#samples.push(sample);
  }

  /**
   * Adds to `sample.requests` what master `s` received since its previous sample. The old
   * master's first sample is the base (what it served before the upgrade); a new master started
   * during the upgrade, so it counts from none. A master that did not answer adds its share later.
   */
  #countRequests(s: SampledMaster, sample: ReportSample): void {
    const counters = s.requests ?? {};
    const known = this.#requests.get(s.pid);
    const since = known?.last ?? (s.pid === this.#oldPid ? counters : {});
    this.#requests.set(s.pid, { first: known?.first ?? since, last: counters });
    for (const [generation, n] of Object.entries(counters)) {
      const key = `master ${s.pid} / generation ${generation}`;
      sample.requests[key] = (sample.requests[key] ?? 0) + n - (since[generation] ?? 0);
    }
  }

  /** Takes a last sample, stops sampling and returns the report. */
  async finish(
    name: string,
    result: UpgradeReportData['result'],
    error: string | undefined,
    summary?: Record<string, unknown>,
  ): Promise<UpgradeReportData> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.sampleNow();
    const sum = (f: (s: ReportSample) => number) => this.#samples.reduce((a, s) => a + f(s), 0);
    return {
      name,
      startedAt: this.#startedAt.toISOString(),
      durationMs: Math.round(performance.now() - this.#t0),
      result,
      error,
      oldPid: this.#oldPid,
      newPid: this.#newPid,
      steps: this.#steps,
      samples: this.#samples,
      requestCounters: Object.fromEntries(this.#requests),
      totals: { requests: sum((s) => Object.values(s.requests).reduce((a, n) => a + n, 0)), failed: sum((s) => s.failed) },
      summary,
    };
  }
}

/** The SVG file written next to a report's JSON file. */
function svgPathOf(file: string): string {
  const ext = path.extname(file);
  return `${ext ? file.slice(0, -ext.length) : file}.svg`;
}

/**
 * The SVG timeline of a report, two charts over the same time axis with every step marked: open
 * connections per master and generation (and connections migrated and cut so far), then requests
 * per second per master and generation and the requests failed (as baton counts them) per interval.
 */
function reportSvg(r: UpgradeReportData): string {
  const keysOf = (f: (s: ReportSample) => Record<string, number>) => [...new Set(r.samples.flatMap((s) => Object.keys(f(s))))];
  const lines = (f: (s: ReportSample) => Record<string, number>, label: (key: string) => string): Series[] =>
    keysOf(f).map((k) => ({
      label: label(k),
      points: r.samples.filter((s) => k in f(s)).map((s) => [s.t, f(s)[k]!] as [number, number]),
    }));
  const connections = lines(
    (s) => s.connections,
    (k) => k,
  );
  connections.push({ label: 'migrated (total)', points: r.samples.map((s) => [s.t, s.migrated]) });
  connections.push({ label: 'cut (total)', points: r.samples.map((s) => [s.t, s.cut]) });
  const requests = lines(
    (s) => s.rps,
    (k) => `${k} req/s`,
  );
  requests.push({ label: 'failed requests', points: r.samples.map((s) => [s.t, s.failed]) });
  const events = r.steps.map((s) => ({ x: s.t, label: s.step }));
  const common = { xLabel: 'ms since the upgrade began', events, marksNote: 'grey: steps', width: 960, height: 400 };
  return stackedCharts([
    {
      ...common,
      title: `baton upgrade '${r.name}': master ${r.oldPid} → ${r.newPid ?? '?'} (${r.result}, ${r.durationMs} ms)`,
      yLabel: 'connections',
      series: connections,
    },
    {
      ...common,
      title: `requests per second (${r.totals.requests} during the upgrade); failed requests per interval (${r.totals.failed})`,
      yLabel: 'requests/s; failed per interval',
      series: requests,
    },
  ]);
}

/** Writes the report as JSON to `file` and its SVG timeline to {@link svgPathOf}(file). */
export function writeUpgradeReport(file: string, r: UpgradeReportData): { json: string; svg: string } {
  const svg = svgPathOf(file);
  fs.writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
  fs.writeFileSync(svg, reportSvg(r));
  return { json: file, svg };
}
