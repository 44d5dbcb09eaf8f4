/**
 * Writes docs/benchmarks.md and its SVG plots (docs/benchmarks/) from the JSON
 * of a peer benchmark run: `node dist/bench/report.js <results.json>`
 * (`npm run bench:report -- <file>`). Every figure and every comparison in the
 * page is computed from that JSON; nothing is typed in by hand.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lineChart, type Series } from './lib/svg.js';
import { median } from './lib/stats.js';
import type { Http1Result, Http1Run } from './scenarios/http1.js';
import type { Http2Result } from './scenarios/http2.js';
import type { IdleResult } from './scenarios/idle.js';
import type { HandoverResult } from './scenarios/handover.js';
import type { ThroughputResult } from './scenarios/throughput.js';
import type { WebSocketResult } from './scenarios/websocket.js';

/** The JSON peers.ts writes. */
export interface PeersResults {
  date: string;
  durationS: number;
  environment: Record<string, unknown> & { tools?: Record<string, string | null>; loadAverage?: { start: number[]; end: number[] } };
  settings: Record<string, unknown> & { upgrades: number; connections: number[] };
  systems: { id: string; label: string; description: string; version: string | null; unavailable: string | null }[];
  scenarios: {
    http1?: Http1Result[];
    http2?: Http2Result[];
    websocket?: WebSocketResult[];
    idle?: IdleResult[];
    handover?: HandoverResult[];
    throughput?: ThroughputResult[];
  };
}

type Ran<T> = Extract<T, { status: 'ran' }>;
const ran = <T extends { status: string }>(list: T[] | undefined): Ran<T>[] => (list ?? []).filter((r) => r.status === 'ran') as Ran<T>[];
const isBaton = (id: string) => id.startsWith('baton-');
const f0 = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(0));
const f1 = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(1));
const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

function mdTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Skipped and failed systems of a scenario, one line each. */
function notRun(list: { label: string; status: string; reason?: string }[] | undefined): string {
  const lines = (list ?? []).filter((r) => r.status !== 'ran').map((r) => `- ${r.label}: **${r.status}** — ${r.reason}`);
  return lines.length ? `\n${lines.join('\n')}\n` : '';
}

/** Longest stretch (ms) without a single successful response, between the first and the last bucket. */
function longestGapMs(run: Http1Run): number {
  let longest = 0;
  let current = 0;
  for (const b of run.timeline) {
    current = b.ok === 0 ? current + run.bucketMs : 0;
    longest = Math.max(longest, current);
  }
  return longest;
}

/** Throughput is plotted per this many ms (sums of the 100 ms buckets): finer is mostly noise on a shared machine. */
const THROUGHPUT_PLOT_MS = 500;

/** Sums consecutive buckets `factor` at a time (the last, partial group is dropped). */
function coarser(timeline: Http1Run['timeline'], factor: number): Http1Run['timeline'] {
  const out: Http1Run['timeline'] = [];
  for (let i = 0; i + factor <= timeline.length; i += factor) {
    const group = timeline.slice(i, i + factor);
    out.push({
      t: group[0]!.t,
      ok: group.reduce((a, b) => a + b.ok, 0),
      non2xx: group.reduce((a, b) => a + b.non2xx, 0),
      lost: group.reduce((a, b) => a + b.lost, 0),
    });
  }
  return out;
}

function http1Plots(list: Ran<Http1Result>[], connections: number, outDir: string): string[] {
  const series = (value: (b: Http1Run['timeline'][number], bucketMs: number) => number, plotMs?: number): Series[] =>
    list.flatMap((r) => {
      const run = r.runs.find((x) => x.connections === connections);
      if (!run) return [];
      const factor = plotMs ? Math.max(1, Math.round(plotMs / run.bucketMs)) : 1;
      return [
        {
          label: r.label,
          points: coarser(run.timeline, factor).map((b) => [b.t / 1000, value(b, run.bucketMs * factor)] as [number, number]),
          marks: run.upgrades.map((u) => u.startedAt / 1000),
        },
      ];
    });
  const files = [`http1-${connections}-throughput.svg`, `http1-${connections}-errors.svg`];
  fs.writeFileSync(
    path.join(outDir, files[0]!),
    lineChart({
      title: `HTTP/1.1 keep-alive, wrk ${connections} connections: responses per second (${THROUGHPUT_PLOT_MS} ms steps)`,
      xLabel: 'seconds since the load started',
      yLabel: 'responses / s',
      series: series((b, ms) => (b.ok * 1000) / ms, THROUGHPUT_PLOT_MS),
    }),
  );
  fs.writeFileSync(
    path.join(outDir, files[1]!),
    lineChart({
      title: `HTTP/1.1 keep-alive, wrk ${connections} connections: failed requests per 100 ms`,
      xLabel: 'seconds since the load started',
      yLabel: 'failed requests (lost + non-2xx)',
      yScale: 'log',
      series: series((b) => b.lost + b.non2xx),
    }),
  );
  return files;
}

/** Renders the report; returns the markdown. SVGs go to `outDir`, linked relative to `linkDir`. */
export function renderReport(r: PeersResults, outDir: string, linkDir: string): string {
  fs.mkdirSync(outDir, { recursive: true });
  const env = r.environment;
  const s = r.scenarios;
  const h1 = ran(s.http1);
  const h2 = ran(s.http2);
  const ws = ran(s.websocket);
  const idle = ran(s.idle);
  const ho = ran(s.handover);
  const tp = s.throughput?.[0];
  const conns = r.settings.connections;
  const L: string[] = [];
  // Every block gets a blank line after it: GFM needs one between a paragraph and a table.
  const p = (...blocks: string[]) => blocks.forEach((b) => L.push(b, ''));

  p(
    '# Benchmarks: baton and its peers',
    `Generated by \`npm run bench:peers\` (bench/peers.ts, bench/report.ts) from one run on ${r.date.slice(0, 10)} (${r.date}); ` +
      `every figure below comes from that run's JSON ([benchmarks/results.json](${linkDir}/results.json)). Regenerate with ` +
      '`npm run bench:peers`, or re-render the JSON with `npm run bench:report -- <file>`.',
  );
  p(
    '## Machine and versions',
    mdTable(
      ['', 'this run'],
      [
        ['CPU', `${String(env.cpus)} × ${String(env.cpuModel)}`],
        ['memory', `${f0(env.memoryMB as number)} MB`],
        ['kernel', `${String(env.platform)} ${String(env.release)}`],
        ['node', String(env.node)],
        ...Object.entries(env.tools ?? {}).map(([k, v]) => [k, v ?? 'not installed']),
        ['load average (1 min) at start / end', `${f1(env.loadAverage?.start[0])} / ${f1(env.loadAverage?.end[0])}`],
        ['run length', `${f0(r.durationS)} s`],
      ],
    ),
    '**The numbers are noisy.** Load generator, proxies and servers share this machine, and other engineers ran their test suites ' +
      'on it at the same time (see the load average). Compare systems within this run, not across runs; failure counts are far more ' +
      'robust than throughput and latency.',
  );
  p(
    '## Systems',
    'Every system serves the same tiny app: the hello handler of bench/fixtures/hello-handler.ts (`hello\\n`, 6 bytes), an HTTP/2 ' +
      'hello on an h2c (prior knowledge) port, and a WebSocket echo at `/ws`. nginx and haproxy are measured as reverse proxies in ' +
      'front of that app on plain Node (bench/fixtures/plain-server.ts), the fairest equivalent of a Node deployment behind them: ' +
      'only the proxy is upgraded, the backend keeps running, so their figures isolate the proxy’s own reload — the best case of a ' +
      'deployment behind it (replacing the backend itself would add that backend’s restart). pm2 runs the same plain app in cluster mode.',
    mdTable(
      ['system', 'version', 'what runs, how it upgrades'],
      r.systems.map((d) => [d.label, d.unavailable ? `skipped: ${d.unavailable}` : (d.version ?? ''), d.description]),
    ),
    `Settings: ${Object.entries(r.settings)
      .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join('/') : String(v)}`)
      .join(', ')}. ` + 'Each knob has an environment variable (bench/lib/scenario.ts) for longer runs.',
  );

  // ---------------------------------------------------------------- headline
  const byId = <T extends { system: string }>(list: T[], id: string) => list.find((x) => x.system === id);
  const head = r.systems
    .filter((d) => !d.unavailable)
    .map((d) => {
      const a = byId(h1, d.id);
      const b = byId(h2, d.id);
      const c = byId(ws, d.id);
      const e = byId(idle, d.id);
      const h = byId(ho, d.id);
      return [
        d.label,
        a ? a.runs.map((x) => f1(x.underUpgrades.failedPerUpgrade)).join(' / ') : '–',
        b ? `${f1(b.failedPerUpgrade)} / ${f1(b.compliant.failed / b.runs.length)}` : '–',
        c ? `${pct(c.survival)}, ${c.totals.lost} lost` : '–',
        e ? `${e.failed} / ${e.freshConnects}` : '–',
        h ? `${f0(h.readyMsMedian)} / ${f0(h.goneMsMedian)}` : '–',
        h ? `${f0(h.rssBeforeMBMedian)} → ${f0(h.rssPeakMBMedian)}` : '–',
      ];
    });
  p(
    `## Summary (${r.settings.upgrades} upgrades per system and scenario)`,
    mdTable(
      [
        'system',
        `1. failed requests per upgrade (wrk ${conns.join(' / ')} conns)`,
        '2. failed h2 streams per upgrade: h2load / compliant client',
        '3. WebSockets surviving an upgrade, messages lost',
        '4. idle connections: failed uses / fresh connects',
        '5. ready / old gone (ms, median)',
        '5. RSS MB before → peak',
      ],
      head,
    ),
    'Skipped systems are listed under each scenario with the reason.',
  );

  // ---------------------------------------------------------------- verdicts
  const verdicts: string[] = [];
  const batonIds = r.systems.filter((d) => isBaton(d.id) && !d.unavailable).map((d) => d.id);
  const claim = (ok: boolean, text: string) => verdicts.push(`- ${ok ? '✅' : '❌'} ${text}`);
  for (const id of batonIds) {
    const label = r.systems.find((d) => d.id === id)!.label;
    const a = byId(h1, id);
    if (a) {
      const failed = a.runs.reduce((x, run) => x + run.underUpgrades.failedRequests, 0);
      claim(
        failed === 0,
        `${label}, scenario 1: ${failed} failed requests (wrk errors of every kind + non-2xx) across ${a.runs.length} × ${r.settings.upgrades} upgrades.`,
      );
    }
    const b = byId(h2, id);
    if (b) {
      claim(
        b.failedStreams === 0,
        `${label}, scenario 2: ${b.failedStreams} failed streams in ${b.streams} as h2load counts them (see scenario 2).`,
      );
      claim(
        b.compliant.failed === 0,
        `${label}, scenario 2: ${b.compliant.failed} failed streams in ${b.compliant.completed + b.compliant.failed} for a client that retries refused streams (${b.compliant.retried} refused and retried).`,
      );
    }
    const e = byId(idle, id);
    if (e) claim(e.failed === 0, `${label}, scenario 4: ${e.failed} failed uses of ${e.uses}, ${e.freshConnects} fresh connects.`);
    const c = byId(ws, id);
    if (c)
      claim(
        c.survival === 1 && c.totals.lost === 0,
        `${label}, scenario 3: ${pct(c.survival)} of WebSockets survived each upgrade, ${c.totals.lost} of ${c.totals.sent} messages lost.`,
      );
  }
  // Where a peer did better than the best baton path, say so.
  const behind: string[] = [];
  const compare = <T extends { system: string; label: string }>(
    list: T[],
    metric: (x: T) => number | null,
    what: string,
    lowerIsBetter: boolean,
    unit = '',
  ) => {
    const vals = list
      .map((x) => ({ x, v: metric(x) }))
      .filter((o): o is { x: T; v: number } => typeof o.v === 'number' && Number.isFinite(o.v));
    const batonVals = vals.filter((o) => isBaton(o.x.system));
    if (!batonVals.length) return;
    const best = batonVals.reduce((a, o) => ((lowerIsBetter ? o.v < a.v : o.v > a.v) ? o : a));
    const better = vals.filter((o) => !isBaton(o.x.system) && (lowerIsBetter ? o.v < best.v : o.v > best.v));
    if (better.length)
      behind.push(
        `- ${what}: ${better.map((o) => `${o.x.label} ${f1(o.v)}${unit}`).join(', ')} — best baton: ${best.x.label} ${f1(best.v)}${unit}.`,
      );
  };
  const num = (v: number | null | undefined) => (typeof v === 'number' ? v : null);
  for (const c of conns) {
    const runOf = (x: Ran<Http1Result>) => x.runs.find((y) => y.connections === c);
    compare(h1, (x) => runOf(x)?.underUpgrades.failedPerUpgrade ?? null, `failed requests per upgrade, wrk ${c} connections`, true);
    compare(h1, (x) => runOf(x)?.steady.requestsPerSec ?? null, `steady-state throughput, wrk ${c} connections`, false, ' req/s');
    compare(h1, (x) => runOf(x)?.underUpgrades.latencyMs.p99 ?? null, `p99 latency during upgrades, wrk ${c} connections`, true, ' ms');
    compare(
      h1,
      (x) => {
        const run = runOf(x);
        return run ? longestGapMs(run) : null;
      },
      `longest gap without responses during upgrades, wrk ${c} connections (${h1[0]?.runs[0]?.bucketMs ?? ''} ms buckets)`,
      true,
      ' ms',
    );
  }
  compare(h2, (x) => x.failedPerUpgrade, 'failed HTTP/2 streams per upgrade (h2load)', true);
  compare(h2, (x) => x.compliant.failed / x.runs.length, 'failed HTTP/2 streams per upgrade (compliant client)', true);
  compare(ws, (x) => x.survival * 100, 'WebSocket survival', false, ' %');
  compare(idle, (x) => x.failed, 'failed idle keep-alive uses', true);
  compare(idle, (x) => x.freshConnects, 'fresh connects of idle keep-alive connections', true);
  compare(ho, (x) => x.readyMsMedian, 'upgrade action → new generation serving (median)', true, ' ms');
  compare(ho, (x) => x.goneMsMedian, 'upgrade action → old generation gone (median)', true, ' ms');
  compare(
    ho,
    (x) => (num(x.rssPeakMBMedian) !== null && num(x.rssBeforeMBMedian) !== null ? x.rssPeakMBMedian - x.rssBeforeMBMedian : null),
    'extra memory during the upgrade (peak − before, median)',
    true,
    ' MB',
  );
  p(
    '## What the run shows',
    'baton against the brief’s promise (0 failed requests in scenarios 1, 2 and 4, 100 % WebSocket survival in scenario 3):',
    verdicts.join('\n') || '- baton did not run.',
    'Where a peer did better than the best baton path in this run (throughput and latency differences of a few per cent are within this machine’s noise; pm2 runs two worker processes, the others one):',
    behind.join('\n') || '- nowhere.',
    'A plain restart’s old process exits before the new one starts, so its short “old gone” time is the start of its outage ' +
      '(scenario 1: longest gap without responses), and nginx’s and haproxy’s times are those of the proxy alone (the Node backend ' +
      'is not replaced).' +
      ho
        .filter((x) => isBaton(x.system))
        .map(
          (x) =>
            ` ${x.label}: the handover starts a new Node process — ${f1(x.rssPeakMBMedian - x.rssBeforeMBMedian)} MB more at the peak, ${f0(x.readyMsMedian)} ms to ready (medians, scenario 5).`,
        )
        .join(''),
  );

  // ---------------------------------------------------------------- scenario 1
  p(
    '## 1. HTTP/1.1 keep-alive load with upgrades (wrk)',
    `For each connection count: a ${String(r.settings.steadyS)} s steady run without upgrades, then a run with ${r.settings.upgrades} upgrades ` +
      `(the first after ${String(r.settings.warmupMs)} ms, then every ${String(r.settings.intervalMs)} ms or once the previous generation is gone). ` +
      'wrk runs with a Lua script (bench/lib/wrk.ts) that buckets responses by time and places each lost request in time; ' +
      'the totals are wrk’s own counters. **failed** = read + write + timeout errors + non-2xx: requests that got no good answer. ' +
      'wrk counts a keep-alive connection the server closes as a read error even when its next request was not written yet, so ' +
      '**lost** (requests written and never answered, placed in time by the Lua timeline; an estimate, ±1 per wrk thread) can be lower. Connect errors are refused connection ' +
      'attempts; wrk retries at once, so during a plain restart they count retries, not requests (and a refused connect shows as a ' +
      'write error). Latency percentiles come from wrk’s histogram of the whole run; the upgrade run is compared with the steady run.',
  );
  for (const c of conns) {
    const rows = h1.flatMap((x) => {
      const run = x.runs.find((y) => y.connections === c);
      if (!run) return [];
      const u = run.underUpgrades;
      const e = u.errors;
      return [
        [
          x.label,
          f0(run.steady.requestsPerSec),
          f0(u.requestsPerSec),
          String(u.requests),
          `${e.connect}/${e.read}/${e.write}/${e.timeout}/${e.non2xx}`,
          String(u.failedRequests),
          f1(u.failedPerUpgrade),
          String(u.lostSeen),
          `${f1(run.steady.latencyMs.p50)} → ${f1(u.latencyMs.p50)}`,
          `${f1(run.steady.latencyMs.p99)} → ${f1(u.latencyMs.p99)}`,
          `${f1(run.steady.latencyMs.p999)} → ${f1(u.latencyMs.p999)}`,
          f0(longestGapMs(run)),
          `${f0(median(run.upgrades.map((y) => y.readyMs)))} / ${f0(median(run.upgrades.map((y) => y.goneMs ?? NaN)))}`,
        ],
      ];
    });
    const files = http1Plots(h1, c, outDir);
    p(
      `### wrk ${c} connections`,
      mdTable(
        [
          'system',
          'req/s steady',
          'req/s with upgrades',
          'requests',
          'wrk errors connect/read/write/timeout/non-2xx',
          'failed',
          'failed per upgrade',
          'lost (timeline)',
          'p50 ms steady → upgrades',
          'p99 ms',
          'p99.9 ms',
          'longest gap without responses (ms)',
          'ready / old gone ms (median)',
        ],
        rows,
      ),
      ...files.map((f) => `![${f}](${linkDir}/${f})`),
    );
  }
  L.push(notRun(s.http1));

  // ---------------------------------------------------------------- scenario 2
  p(
    '## 2. HTTP/2 load with upgrades (h2load)',
    `h2load -c ${String(r.settings.h2Clients)} -m ${String(r.settings.h2Streams)} against the h2c port, one ${String(r.settings.h2RunS)} s run per upgrade, ` +
      'the upgrade a third into it. h2load counts every stream in flight on a connection that ends — by GOAWAY, close or reset — ' +
      'as failed, including streams refused with REFUSED_STREAM, which were never processed and which RFC 9113 §8.7 lets a client ' +
      'send again; and it does not open a new connection afterwards (that client’s load stops). So with clients that keep ' +
      `${String(r.settings.h2Streams)} streams in flight, up to clients × streams fail per upgrade whenever connections end. ` +
      'baton does not end them: each h2c connection moves to the new generation between two streams, alive (src/migrate/http2-session.ts), ' +
      'so h2load’s clients go on on the same connections. Next to h2load, a **compliant client** (bench/lib/h2-clients.ts, ' +
      `node:http2 granting a 1 MiB connection window as browsers do, 2 connections × ${String(r.settings.h2Streams)} streams) sends a refused stream again and replaces a connection after GOAWAY, as ` +
      'RFC 9113 allows; its **failed** streams are the ones no client could safely retry (reset otherwise, connection died under them, ' +
      'non-2xx, no answer in 10 s). **completed after** = h2load streams started after the new generation was ready that completed: 0 means h2load’s load stopped.',
    mdTable(
      [
        'system',
        'h2load streams',
        'h2load failed (incl. errored)',
        'non-2xx',
        'h2load failed per upgrade',
        'h2load completed after the upgrade (per run)',
        'compliant client: completed / refused and retried / failed',
        'compliant client: connections, errors',
        'ready ms (median)',
      ],
      h2.map((x) => [
        x.label,
        String(x.streams),
        String(x.runs.reduce((a, y) => a + y.failed, 0)),
        String(x.runs.reduce((a, y) => a + y.non2xx, 0)),
        f1(x.failedPerUpgrade),
        x.runs.map((y) => y.completedAfterUpgrade).join(', '),
        `${x.compliant.completed} / ${x.compliant.retried} / ${x.compliant.failed}`,
        `${x.compliant.connects}${
          Object.keys(x.compliant.errors).length
            ? `, ${Object.entries(x.compliant.errors)
                .map(([k, v]) => `${k}×${v}`)
                .join(' ')}`
            : ''
        }`,
        f0(median(x.runs.map((y) => y.upgrade.readyMs))),
      ]),
    ),
  );
  L.push(notRun(s.http2));

  // ---------------------------------------------------------------- scenario 3
  p(
    '## 3. Long connections: WebSockets across upgrades',
    `${String(r.settings.wsConnections)} WebSocket connections (the ws package, no permessage-deflate), each sending a numbered message every ` +
      `${String(r.settings.wsMessageIntervalMs)} ms and expecting its echo. Per upgrade: connections open before it that are still open once the ` +
      'old generation is gone (or the settle timeout passed); closed ones are then reopened. **lost** = messages sent and never echoed. ' +
      'nginx and haproxy keep a proxied WebSocket on the old worker until it closes or the old worker is cut ' +
      '(worker_shutdown_timeout / hard-stop-after, set to 5 s here: with nginx’s default a second binary upgrade is refused while an old ' +
      'worker holds a connection); pm2 and the plain restart close them (1001, the app’s graceful shutdown).',
    mdTable(
      [
        'system',
        'survived per upgrade',
        'survival',
        'messages sent',
        'echoed',
        'lost',
        'duplicated / out of order',
        'close codes',
        'old gone ms (median)',
      ],
      ws.map((x) => [
        x.label,
        x.upgrades.map((u) => `${u.survived}/${u.openBefore}`).join(', '),
        pct(x.survival),
        String(x.totals.sent),
        String(x.totals.echoed),
        String(x.totals.lost),
        `${x.totals.duplicated} / ${x.totals.outOfOrder}`,
        Object.entries(x.totals.closeCodes)
          .map(([k, v]) => `${k}×${v}`)
          .join(' ') || '–',
        f0(median(x.upgrades.map((u) => u.goneMs ?? NaN))),
      ]),
    ),
  );
  L.push(notRun(s.websocket));

  // ---------------------------------------------------------------- scenario 4
  p(
    '## 4. Idle keep-alive connections used once per upgrade',
    `${String(r.settings.idleConnections)} undici clients, one keep-alive connection each, opened with one request and left idle. At each upgrade every ` +
      `connection sends one request, the uses spread evenly over the ${String(r.settings.idleSpreadMs)} ms from the upgrade action (some land during ` +
      'the handover, some after). A client that finds its connection closed by the server opens a new one first (**fresh connect**, ' +
      'not a failure); a request its connection dies under **fails** (undici does not retry). The Node servers’ keepAliveTimeout is ' +
      '120 s here so that no connection times out during the run.',
    mdTable(
      ['system', 'uses', 'failed', 'fresh connects', 'per upgrade: failed / fresh', 'errors'],
      idle.map((x) => {
        const errs: Record<string, number> = {};
        for (const u of x.upgrades) for (const [k, v] of Object.entries(u.errors)) errs[k] = (errs[k] ?? 0) + v;
        return [
          x.label,
          String(x.uses),
          String(x.failed),
          String(x.freshConnects),
          x.upgrades.map((u) => `${u.failed + u.non2xx}/${u.freshConnects}`).join(', '),
          Object.entries(errs)
            .map(([k, v]) => `${k}×${v}`)
            .join(' ') || '–',
        ];
      }),
    ),
  );
  L.push(notRun(s.idle));

  // ---------------------------------------------------------------- scenario 5
  p(
    '## 5. Handover time and memory (no load)',
    `${r.settings.upgrades} upgrades back to back. **ready** = upgrade action → new generation serving (baton: the successor’s ready(); ` +
      'nginx: the new master’s worker exists (binary) or a new worker exists (HUP); haproxy: the new worker exists; pm2: `pm2 reload` ' +
      'returned; plain: the new process listens). **old gone** = upgrade action → every process of the old generation exited ' +
      '(plain restart: the old one exits before the new one starts). **RSS** = summed VmRSS of every process of the system, sampled ' +
      'every 10 ms: before the action, the peak until the old generation is gone, after. For nginx and haproxy it includes the Node ' +
      'backend (about 50 MB, unchanged by the upgrade); for pm2, its daemon. RSS counts pages shared between a master and its forked ' +
      'workers once per process, so sums are upper bounds.',
    mdTable(
      ['system', 'ready ms (each)', 'old gone ms (each)', 'RSS MB before', 'peak', 'after', 'extra at peak', 'most processes'],
      ho.map((x) => [
        x.label,
        x.upgrades.map((u) => f0(u.readyMs)).join(', '),
        x.upgrades.map((u) => f0(u.goneMs)).join(', '),
        f1(x.rssBeforeMBMedian),
        f1(x.rssPeakMBMedian),
        f1(median(x.upgrades.map((u) => u.rss.afterMB))),
        f1(x.rssPeakMBMedian - x.rssBeforeMBMedian),
        String(Math.max(...x.upgrades.map((u) => u.rss.maxProcesses))),
      ]),
    ),
  );
  L.push(notRun(s.handover));

  // ---------------------------------------------------------------- scenario 6
  if (tp?.status === 'ran') {
    const t = tp.result;
    p(
      '## 6. Steady-state throughput: baton-hosted vs plain Node',
      `The same hello handler, no upgrades, wrk -c ${tp.connections}, ${t.runs.length / 2} rounds alternating the order (bench/lib/throughput.ts, ` +
        'also part 4 of `npm run bench`).',
      mdTable(
        ['', 'baton', 'plain Node'],
        [
          ['req/s (mean of the rounds)', f0(t.batonRps), f0(t.plainRps)],
          ['server CPU µs per request', f1(t.batonCpuUsPerRequest), f1(t.plainCpuUsPerRequest)],
        ],
      ),
      `baton ÷ plain per round: ${t.roundRatios.map(pct).join(', ')}; median **${pct(t.ratio)}**.`,
    );
  } else if (tp) p('## 6. Steady-state throughput', `${tp.status}: ${tp.reason}`);
  return `${L.join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trimEnd()}\n`;
}

/** Writes the report of `file` into docs/ (and copies the JSON next to the plots). */
export function writeReport(file: string): string {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const outDir = path.join(root, 'docs', 'benchmarks');
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as PeersResults;
  const md = renderReport(r, outDir, 'benchmarks');
  fs.copyFileSync(file, path.join(outDir, 'results.json'));
  const target = path.join(root, 'docs', 'benchmarks.md');
  fs.writeFileSync(target, md);
  return target;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node dist/bench/report.js <bench/results/peers-….json>\n');
    process.exitCode = 2;
  } else process.stdout.write(`wrote ${writeReport(file)}\n`);
}
