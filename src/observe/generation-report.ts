/**
 * The library's picture of an upgrade (`baton upgrade --report` for a
 * takeover or exec upgrade of a `start()` generation): from the moment a
 * successor says Hello to the end of this generation's drain, the generation
 * is sampled every {@link SAMPLE_INTERVAL_MS} — its open connections, the
 * requests it received (requests per second), connections migrated so far —
 * each phase and handover step on its side is marked, and the connections cut
 * at the drain timeout are the failed requests as baton counts them. At the
 * end the report is written as the supervisor's is: JSON to the file, an SVG
 * timeline next to it (upgrade-report.ts), in the same format.
 *
 * The picture is the replaced generation's: the successor is another process,
 * and what it serves shows in its own metrics (and in its own report when it
 * is replaced in turn).
 */
import type { Generation } from '../generation.js';
import { ChannelNames, subscribe, type StepEvent } from '../core/channels.js';
import { writeUpgradeReport, type ReportSample, type UpgradeReportData } from './upgrade-report.js';

/** How often the generation is sampled during an upgrade. */
const SAMPLE_INTERVAL_MS = 100;

/** What {@link recordUpgrades} does with each report. */
export interface RecordUpgradesOptions {
  /** Called with each report once written (its JSON and SVG paths), or with the error that kept it from being written. */
  onReport?: (result: { json: string; svg: string; report: UpgradeReportData } | { error: Error }) => void;
}

/**
 * Writes a report of every upgrade that replaces `generation` (a takeover or
 * an exec successor): JSON to `file`, the SVG timeline next to it (`file`
 * with `.svg`). Call after start(); an upgrade that fails (the generation
 * serves on) is reported with result `failed`, and the next one overwrites
 * it. Returns a function that stops recording. A report that cannot be
 * written goes to `onReport` (or is dropped): it never fails the upgrade.
 */
export function recordUpgrades(generation: Generation, file: string, options: RecordUpgradesOptions = {}): () => void {
  let run: Run | undefined;
  const finish = (result: UpgradeReportData['result'], error?: Error, forced = 0) => {
    const r = run;
    run = undefined;
    if (!r) return;
    const report = r.finish(result, error?.message, forced);
    try {
      options.onReport?.({ ...writeUpgradeReport(file, report), report });
    } catch (err) {
      options.onReport?.({ error: err as Error });
    }
  };
  const onStart = (info: { via: string; pid: number }) => {
    run?.stop();
    run = new Run(generation, info.pid, `${info.via} upgrade`);
  };
  const onUpgrade = (r: { successorPid: number }) => run?.successor(r.successorPid);
  const onBatch = (info: { adopted: number }) => run?.migrated(info.adopted);
  const onPhase = (to: string) => run?.mark(`phase ${to}`);
  const onFailed = (err: Error) => finish('failed', err);
  const onDrained = (r: { forced: number }) => finish('done', undefined, r.forced);
  generation.on('upgrade-start', onStart);
  generation.on('upgrade', onUpgrade);
  generation.on('connections-out', onBatch);
  generation.on('phase', onPhase);
  generation.on('upgrade-failed', onFailed);
  generation.on('drained', onDrained);
  return () => {
    generation.off('upgrade-start', onStart);
    generation.off('upgrade', onUpgrade);
    generation.off('connections-out', onBatch);
    generation.off('phase', onPhase);
    generation.off('upgrade-failed', onFailed);
    generation.off('drained', onDrained);
    run?.stop();
    run = undefined;
  };
}

/** One upgrade being recorded. */
class Run {
  readonly #t0 = performance.now();
  readonly #startedAt = new Date();
  readonly #generation: Generation;
  readonly #key: string;
  readonly #firstRequests: number;
  readonly #steps: { t: number; step: string }[] = [];
  readonly #samples: ReportSample[] = [];
  readonly #timer: NodeJS.Timeout;
  readonly #unsubscribe: () => void;
  #successorPid: number | undefined;
  #migrated = 0;
  /** Requests received up to the last sample. */
  #counted: number;

  constructor(generation: Generation, peerPid: number, what: string) {
    this.#generation = generation;
    this.#key = `pid ${process.pid} / generation ${generation.number}`;
    this.#firstRequests = generation.requests;
    this.#counted = this.#firstRequests;
    this.mark(`${what}: successor pid ${peerPid} said Hello`);
    // The phase moved before 'upgrade-start' was emitted.
    this.mark(`phase ${generation.phase}`);
    // Steps of this process only (a successor in the same process would publish its own).
    this.#unsubscribe = subscribe<StepEvent>(ChannelNames.step, (e) => {
      if (e.pid === process.pid && e.role === 'predecessor') this.mark(e.step);
    });
    this.#sample(0);
    this.#timer = setInterval(() => this.#sample(0), SAMPLE_INTERVAL_MS);
    this.#timer.unref();
  }

  mark(step: string): void {
    this.#steps.push({ t: Math.round(performance.now() - this.#t0), step });
  }

  successor(pid: number): void {
    this.#successorPid = pid;
  }

  migrated(n: number): void {
    this.#migrated += n;
  }

  #sample(cut: number): void {
    const t = Math.round(performance.now() - this.#t0);
    const previous = this.#samples.at(-1);
    const now = this.#generation.requests;
    const requests = now - this.#counted;
    this.#counted = now;
    const seconds = previous ? (t - previous.t) / 1000 : 0;
    this.#samples.push({
      t,
      connections: { [this.#key]: this.#generation.connections },
      requests: { [this.#key]: requests },
      rps: { [this.#key]: seconds > 0 ? Math.round(requests / seconds) : 0 },
      phases: { [String(process.pid)]: this.#generation.phase },
      cut,
      failed: Math.max(0, cut - (previous?.cut ?? 0)),
      migrated: this.#migrated,
    });
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#unsubscribe();
  }

  finish(result: UpgradeReportData['result'], error: string | undefined, forced: number): UpgradeReportData {
    this.stop();
    this.#sample(forced);
    const generation = String(this.#generation.number);
    const requests = this.#samples.reduce((a, s) => a + s.requests[this.#key]!, 0);
    return {
      name: this.#generation.settings.name,
      startedAt: this.#startedAt.toISOString(),
      durationMs: Math.round(performance.now() - this.#t0),
      result,
      error,
      oldPid: process.pid,
      newPid: this.#successorPid,
      steps: this.#steps,
      samples: this.#samples,
      requestCounters: {
        [String(process.pid)]: { first: { [generation]: this.#firstRequests }, last: { [generation]: this.#generation.requests } },
      },
      totals: { requests, failed: this.#samples.reduce((a, s) => a + s.failed, 0) },
      summary: undefined,
    };
  }
}
