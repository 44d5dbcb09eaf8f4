/**
 * pm2 (from npm, a devDependency) running the plain Node hello app in cluster
 * mode, upgraded by `pm2 reload`: one worker after the other, a new worker is
 * forked, and once it listens the old one gets SIGINT (the app closes
 * gracefully, see the plain fixture) and SIGKILL after pm2's kill_timeout.
 * Each system instance has its own PM2_HOME, so it never meets another pm2.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { benchFixture, killAll, monoMs } from '../lib/processes.js';
import { alive, childrenOf, processTree } from '../lib/rss.js';
import {
  freePort,
  goneWithin,
  run,
  until,
  waitServing,
  type RunningSystem,
  type SystemContext,
  type SystemDefinition,
} from '../lib/system.js';
import { plainEnv } from './plain.js';

/** Cluster workers: one per core of the 2-core machines this bench is sized for. */
const INSTANCES = Number(process.env.BENCH_PM2_INSTANCES ?? 2);
/** pm2's default kill_timeout: SIGKILL this long after SIGINT. */
const KILL_TIMEOUT_MS = Number(process.env.BENCH_PM2_KILL_TIMEOUT_MS ?? 1600);

function pm2Bin(): string | undefined {
  try {
    return path.join(path.dirname(createRequire(import.meta.url).resolve('pm2/package.json')), 'bin', 'pm2');
  } catch {
    return undefined;
  }
}

function pm2Version(): string {
  try {
    return `pm2/${(createRequire(import.meta.url)('pm2/package.json') as { version: string }).version}`;
  } catch {
    return '';
  }
}

/** pm2 cluster mode, reloaded with `pm2 reload`. */
export const pm2Reload: SystemDefinition = {
  id: 'pm2-reload',
  label: 'pm2 cluster reload',
  description: `pm2 cluster mode, ${INSTANCES} workers of the plain Node hello app (graceful SIGINT handler); upgrade: \`pm2 reload\` (kill_timeout ${KILL_TIMEOUT_MS} ms)`,
  unavailable: () => (pm2Bin() ? null : 'pm2 not installed (npm ci installs it: it is a devDependency)'),
  version: pm2Version,
  supports: { h2c: true, websocket: true },
  async start(ctx: SystemContext): Promise<RunningSystem> {
    const bin = pm2Bin()!;
    const home = path.join(ctx.dir, 'pm2');
    fs.mkdirSync(home, { recursive: true });
    const port = await freePort();
    const h2cPort = ctx.h2c ? await freePort() : undefined;
    // pm2 hands the CLI's environment to the app.
    const env = { PM2_HOME: home, ...plainEnv(ctx, port, h2cPort) };
    const pm2 = (...args: string[]) => run(process.execPath, [bin, ...args], env);
    // --wait-ready: a new worker counts as up once it sent 'ready' (after listening), as pm2's graceful-reload guide sets it up.
    await pm2(
      'start',
      benchFixture('plain-server'),
      '-i',
      String(INSTANCES),
      '--name',
      'peer',
      '--kill-timeout',
      String(KILL_TIMEOUT_MS),
      '--wait-ready',
      '--listen-timeout',
      '10000',
    );
    const god = await until(() => Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8')) || undefined, 'pm2 daemon pid');
    await until(() => childrenOf(god).length >= INSTANCES, 'pm2 workers');
    await waitServing(port, 'pm2 app');
    return {
      httpPort: port,
      h2cPort,
      pids: () => processTree([god]),
      async upgrade() {
        const oldWorkers = childrenOf(god);
        const startedAt = monoMs();
        // The command returns once every worker was replaced.
        await pm2('reload', 'peer');
        return { startedAt, readyAt: monoMs(), gone: goneWithin(() => oldWorkers.every((p) => !alive(p))) };
      },
      async stop() {
        const all = processTree([god]);
        await pm2('kill').catch(() => undefined);
        await until(() => all.every((p) => !alive(p)), 'pm2 exit', 15_000).catch(() => killAll(all));
      },
    };
  },
};
