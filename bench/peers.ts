/**
 * The peer benchmark (`npm run bench:peers`): baton and its peers — nginx,
 * haproxy, pm2, a plain restart — measured the same way, in one run on one
 * machine. `node dist/bench/peers.js [scenario …] [--systems id,id]`;
 * scenarios: http1 http2 websocket idle handover throughput (default: all).
 * Writes bench/results/peers-<date>.json; with every scenario run (or
 * --report), also docs/benchmarks.md and its SVG plots.
 */
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { monoMs } from './lib/processes.js';
import { rounded } from './lib/stats.js';
import { settingsFromEnv } from './lib/scenario.js';
import { http1 } from './scenarios/http1.js';
import { http2 } from './scenarios/http2.js';
import { idle } from './scenarios/idle.js';
import { websocket } from './scenarios/websocket.js';
import { systems } from './systems/index.js';

const SCENARIOS = { http1, http2, websocket, idle } as const;
type ScenarioName = keyof typeof SCENARIOS;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const sysArg = args.indexOf('--systems');
  const only = sysArg >= 0 ? args[sysArg + 1]!.split(',') : undefined;
  const names = args.filter((a, i) => !a.startsWith('--') && (sysArg < 0 || i !== sysArg + 1)) as ScenarioName[];
  const scenarios = names.length ? names : (Object.keys(SCENARIOS) as ScenarioName[]);
  for (const n of scenarios)
    if (!(n in SCENARIOS)) throw new Error(`unknown scenario '${n}' (known: ${Object.keys(SCENARIOS).join(', ')})`);
  const chosen = systems.filter((d) => !only || only.includes(d.id));
  const settings = settingsFromEnv();
  const startedAt = new Date();
  const began = monoMs();
  const results: Record<string, unknown[]> = {};
  for (const name of scenarios) {
    results[name] = [];
    for (const def of chosen) results[name]!.push(await SCENARIOS[name](def, settings));
  }
  const cpu = os.cpus();
  const out = rounded({
    benchmark: 'peers',
    date: startedAt.toISOString(),
    durationS: (monoMs() - began) / 1000,
    environment: {
      node: process.version,
      platform: os.platform(),
      release: os.release(),
      cpus: cpu.length,
      cpuModel: cpu[0]?.model,
      memoryMB: os.totalmem() / 2 ** 20,
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
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  fs.mkdirSync(dir, { recursive: true });
  const file = `${dir}peers-${startedAt
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-')}.json`;
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
}

try {
  await main();
} catch (err) {
  process.exitCode = 1;
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
}
