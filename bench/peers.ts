/**
 * The peer benchmark (`npm run bench:peers`): baton and its peers — nginx,
 * haproxy, pm2, a plain restart — measured the same way, in one run on one
 * machine. `node dist/bench/peers.js [scenario …] [--systems id,id]`;
 * scenarios: http1 http2 websocket idle handover throughput (default: all).
 * Writes bench/results/peers-<date>.json; with every scenario run (or
 * --report), also docs/benchmarks.md and its SVG plots.
 */
import os from 'node:os';
import { monoMs } from './lib/processes.js';
import { commandVersion } from './lib/system.js';
import { writeReport } from './report.js';
import { machine, writeResults } from './lib/results.js';
import { rounded } from './lib/stats.js';
import { settingsFromEnv } from './lib/scenario.js';
import { http1 } from './scenarios/http1.js';
import { http2 } from './scenarios/http2.js';
import { idle } from './scenarios/idle.js';
import { handover } from './scenarios/handover.js';
import { throughput } from './scenarios/throughput.js';
import { websocket } from './scenarios/websocket.js';
import { systems } from './systems/index.js';

const SCENARIOS = { http1, http2, websocket, idle, handover, throughput } as const;
type ScenarioName = keyof typeof SCENARIOS;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const sysArg = args.indexOf('--systems');
  const only = sysArg >= 0 ? args[sysArg + 1]!.split(',') : undefined;
  const names = args.filter((a, i) => !a.startsWith('--') && (sysArg < 0 || i !== sysArg + 1)) as ScenarioName[];
  if (only)
    for (const id of only)
      if (!systems.some((d) => d.id === id)) throw new Error(`unknown system '${id}' (known: ${systems.map((d) => d.id).join(', ')})`);
  const scenarios = names.length ? names : (Object.keys(SCENARIOS) as ScenarioName[]);
  for (const n of scenarios)
    if (!(n in SCENARIOS)) throw new Error(`unknown scenario '${n}' (known: ${Object.keys(SCENARIOS).join(', ')})`);
  const chosen = systems.filter((d) => !only || only.includes(d.id));
  const settings = settingsFromEnv();
  const startedAt = new Date();
  const loadStart = os.loadavg();
  const began = monoMs();
  const results: Record<string, unknown[]> = {};
  for (const name of scenarios) {
    if (name === 'throughput') {
      results[name] = [await throughput(settings)];
      continue;
    }
    results[name] = [];
    for (const def of chosen) results[name]!.push(await SCENARIOS[name](def, settings));
  }
  const tools = {
    wrk: commandVersion('wrk', ['--version']).replace(/ Copyright.*/, '') || null,
    h2load: commandVersion('h2load', ['--version']) || null,
    ...Object.fromEntries(systems.filter((d) => !d.id.startsWith('baton-')).map((d) => [d.label, d.unavailable() ? null : d.version()])),
  };
  const out = rounded({
    benchmark: 'peers',
    date: startedAt.toISOString(),
    durationS: (monoMs() - began) / 1000,
    environment: {
      ...machine(),
      memoryMB: os.totalmem() / 2 ** 20,
      tools,
      loadAverage: { start: loadStart, end: os.loadavg() },
    },
    settings,
    systems: chosen.map((d) => ({
      id: d.id,
      label: d.label,
      description: d.description,
      version: d.unavailable() ? null : d.version(),
      unavailable: d.unavailable(),
    })),
    scenarios: results,
  });
  const file = writeResults('peers', startedAt, out);
  process.stdout.write(`results: ${file}\n`);
  // The published report comes from a run of every scenario (or when asked).
  if (!names.length || args.includes('--report')) process.stdout.write(`report: ${writeReport(file)}\n`);
}

try {
  await main();
} catch (err) {
  process.exitCode = 1;
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
}
