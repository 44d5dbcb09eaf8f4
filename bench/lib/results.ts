/** Where and how every benchmark records a run: the machine it ran on, and bench/results/<name>-<date>.json. */
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

/** The machine a run was measured on. */
export function machine(): { node: string; platform: string; release: string; cpus: number; cpuModel: string | undefined } {
  const cpu = os.cpus();
  return { node: process.version, platform: os.platform(), release: os.release(), cpus: cpu.length, cpuModel: cpu[0]?.model };
}

/** Writes `results` to bench/results/<name>-<date>.json (date of `startedAt`, to the second); returns the path. */
export function writeResults(name: string, startedAt: Date, results: unknown): string {
  const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
  fs.mkdirSync(dir, { recursive: true });
  const file = `${dir}${name}-${startedAt
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-')}.json`;
  fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
