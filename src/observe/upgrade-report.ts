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
import { lineChart, type Series } from './svg-chart.js';

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
  /** Phase of each master (by pid). */
  phases: Record<string, string>;
  /** Connections cut so far by the masters sampled (their `counters.forced`), since the upgrade began. */
  cut: number;
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
  /** What `baton upgrade` printed as its summary (done only). */
  summary: Record<string, unknown> | undefined;
}

/**
 * Samples the old master (and the new master it names as its child) until
 * {@link UpgradeRecorder.finish}. `status` asks one master (undefined when it
 * does not answer).
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
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;

  constructor(oldPid: number, status: (pid: number) => Promise<SampledMaster | undefined>) {
    this.#oldPid = oldPid;
    this.#status = status;
    this.#schedule();
  }

  /** Marks a step (a line of `baton upgrade`'s progress). */
  mark(step: string): void {
    this.#steps.push({ t: Math.round(performance.now() - this.#t0), step });
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#sampling = this.#sample().finally(() => {
        if (this.#timer) this.#schedule();
      });
    }, SAMPLE_INTERVAL_MS);
  }

  async #sample(): Promise<void> {
    const t = Math.round(performance.now() - this.#t0);
    const old = await this.#status(this.#oldPid);
    this.#newPid = old?.childPid ?? this.#newPid;
    const fresh = this.#newPid === undefined ? undefined : await this.#status(this.#newPid);
    const sample: ReportSample = { t, connections: {}, phases: {}, cut: 0, migrated: 0 };
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
    }
    // A generation no longer sampled (its workers or its master exited) holds no connections: its line ends at 0.
    for (const [key, n] of Object.entries(this.#samples.at(-1)?.connections ?? {})) {
      if (n > 0 && !(key in sample.connections)) sample.connections[key] = 0;
    }
    this.#samples.push(sample);
  }

  /** Stops sampling and returns the report. */
  async finish(
    name: string,
    result: UpgradeReportData['result'],
    error: string | undefined,
    summary?: Record<string, unknown>,
  ): Promise<UpgradeReportData> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#sampling;
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
      summary,
    };
  }
}

/** The SVG file written next to a report's JSON file. */
function svgPathOf(file: string): string {
  const ext = path.extname(file);
  return `${ext ? file.slice(0, -ext.length) : file}.svg`;
}

/** The SVG timeline of a report: connections per master and generation, connections cut and migrated, steps marked. */
function reportSvg(r: UpgradeReportData): string {
  const keys = [...new Set(r.samples.flatMap((s) => Object.keys(s.connections)))];
  const series: Series[] = keys.map((k) => ({
    label: k,
    points: r.samples.filter((s) => k in s.connections).map((s) => [s.t, s.connections[k]!] as [number, number]),
  }));
  series.push({ label: 'migrated (total)', points: r.samples.map((s) => [s.t, s.migrated]) });
  series.push({ label: 'cut (total)', points: r.samples.map((s) => [s.t, s.cut]) });
  return lineChart({
    title: `baton upgrade '${r.name}': master ${r.oldPid} → ${r.newPid ?? '?'} (${r.result}, ${r.durationMs} ms)`,
    xLabel: 'ms since the upgrade began',
    yLabel: 'connections',
    series,
    events: r.steps.map((s) => ({ x: s.t, label: s.step })),
    marksNote: 'grey: steps',
    width: 960,
    height: 400,
  });
}

/** Writes the report as JSON to `file` and its SVG timeline to {@link svgPathOf}(file). */
export function writeUpgradeReport(file: string, r: UpgradeReportData): { json: string; svg: string } {
  const svg = svgPathOf(file);
  fs.writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
  fs.writeFileSync(svg, reportSvg(r));
  return { json: file, svg };
}
