/**
 * A tiny SVG line-chart writer for the benchmark report and the upgrade
 * report (`baton upgrade --report`): one line per series, vertical marks
 * (upgrade moments) in the series' colour, labelled marks (phases, steps),
 * linear or log(1 + y) axis. No dependencies; the output is deterministic text.
 */

/** One line of a chart. */
export interface Series {
  label: string;
  /** [x, y] points, x ascending. */
  points: [number, number][];
  /** x positions to mark (e.g. upgrade starts), drawn as short ticks under the plot. */
  marks?: number[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** log: y is drawn as log10(1 + y), for counts that span orders of magnitude. */
  yScale?: 'linear' | 'log';
  width?: number;
  height?: number;
  /** Labelled vertical lines across the plot (e.g. the steps of an upgrade), drawn in grey with their label at the top. */
  events?: { x: number; label: string }[];
  /** The note explaining the series' dashed marks (default: "dashed: upgrade starts"). */
  marksNote?: string;
}

/** Colour-blind-safe palette (Okabe–Ito), in series order. */
export const PALETTE = ['#0072B2', '#56B4E9', '#D55E00', '#E69F00', '#009E73', '#CC79A7', '#000000', '#F0E442', '#999999'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(2)}`);

/** "Nice" tick values covering [0, max]. */
function ticks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v <= max + step / 2; v += step) out.push(+v.toFixed(10));
  return out;
}

/** Renders a line chart as a standalone SVG document. */
export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 760;
  const H = o.height ?? 320;
  const m = { left: 64, right: 180, top: 32, bottom: 48 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const log = o.yScale === 'log';
  const ty = (y: number) => (log ? Math.log10(1 + Math.max(0, y)) : y);
  const all = o.series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p[0]), ...o.series.flatMap((s) => s.marks ?? []), ...(o.events ?? []).map((e) => e.x));
  const yMaxRaw = Math.max(0, ...all.map((p) => p[1]));
  const yTicks = log ? [0, ...Array.from({ length: Math.ceil(Math.log10(1 + yMaxRaw)) }, (_, i) => 10 ** (i + 1))] : ticks(yMaxRaw);
  const yMax = Math.max(ty(yTicks.at(-1)!), 1e-9);
  const xTicks = ticks(xMax, 8);
  const X = (x: number) => m.left + (x / xTicks.at(-1)!) * pw;
  const Y = (y: number) => m.top + ph - (ty(y) / yMax) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.left}" y="18" font-size="13" font-weight="bold">${esc(o.title)}</text>`,
  ];
  for (const v of yTicks) {
    const y = Y(v).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(v)}</text>`);
  }
  for (const v of xTicks) {
    const x = X(v).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#666"/>`);
    parts.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle">${fmt(v)}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#666"/>`);
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 8}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${log ? ' (log scale)' : ''}</text>`,
  );
  o.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    if (s.points.length) {
      const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.4" stroke-linejoin="round"/>`);
    }
    // Upgrade moments: a dashed line through the plot and a tick below it, offset per series so they stay apart.
    for (const x of s.marks ?? []) {
      const px = X(x).toFixed(1);
      parts.push(
        `<line x1="${px}" x2="${px}" y1="${m.top}" y2="${m.top + ph}" stroke="${color}" stroke-width="0.8" stroke-dasharray="2 4" opacity="0.6"/>`,
      );
      parts.push(
        `<line x1="${px}" x2="${px}" y1="${m.top + ph + 20 + (i % 4) * 4}" y2="${m.top + ph + 23 + (i % 4) * 4}" stroke="${color}" stroke-width="2"/>`,
      );
    }
    const ly = m.top + 8 + i * 16;
    parts.push(`<line x1="${m.left + pw + 12}" x2="${m.left + pw + 32}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<text x="${m.left + pw + 38}" y="${ly}" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  (o.events ?? []).forEach((e, i) => {
    const px = X(e.x).toFixed(1);
    parts.push(`<line x1="${px}" x2="${px}" y1="${m.top}" y2="${m.top + ph}" stroke="#999" stroke-width="0.8"/>`);
    // Labels stagger over three rows so close steps stay readable.
    parts.push(`<text x="${px}" y="${m.top + 10 + (i % 3) * 11}" fill="#444" font-size="9"> ${esc(e.label)}</text>`);
  });
  parts.push(
    `<text x="${m.left + pw + 12}" y="${m.top + ph + 4}" fill="#666">${esc(o.marksNote ?? 'dashed: upgrade starts')}</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

/**
 * Charts rendered by {@link lineChart} stacked top to bottom in one SVG
 * document (each a nested `<svg>` at its offset), sharing nothing but the page.
 */
export function stackedCharts(charts: ChartOptions[]): string {
  let y = 0;
  const width = Math.max(...charts.map((c) => c.width ?? 760));
  const parts = charts.map((c) => {
    const nested = lineChart(c).replace(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" /, `<svg x="0" y="${y}" `);
    y += c.height ?? 320;
    return nested;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}">\n${parts.join('')}</svg>\n`;
}
