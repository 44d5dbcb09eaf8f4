/**
 * baton's systems: the bench fixture (bench/fixtures/baton-server.ts) upgraded
 * by takeover (a second process of the same server) or by exec (SIGUSR2: the
 * running generation spawns its successor), and the supervisor's reload and
 * upgrade (`baton start` running the plain app with zero-code adoption).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BatonFixtures, type Ready, type Via } from '../lib/baton-fixture.js';
import { benchFixture, killAll, monoMs, pidsOf } from '../lib/processes.js';
import { alive, processTree } from '../lib/rss.js';
import { freePort, goneWithin, run, type RunningSystem, type SystemContext, type SystemDefinition } from '../lib/system.js';
import { plainEnv } from './plain.js';

const actions: Record<Via, string> = {
  takeover: 'a second process of the same server takes the listeners over the upgrade socket',
  exec: 'SIGUSR2: the running generation spawns its successor with the listeners as inherited fds',
};

/** The baton fixture upgraded by `via`. */
export function batonSystem(via: Via): SystemDefinition {
  return {
    id: `baton-${via}`,
    label: `baton ${via}`,
    description: `the hello app under baton (one Node process); upgrade: ${actions[via]}; live connections migrate`,
    unavailable: () => null,
    version: () => `baton ${process.env.npm_package_version ?? ''}, node ${process.version}`.replace(' ,', ','),
    supports: { h2c: true, websocket: true },
    async start(ctx: SystemContext): Promise<RunningSystem> {
      const fixtures = new BatonFixtures(ctx.log);
      const env: NodeJS.ProcessEnv = {
        BATON_SOCKET_DIR: ctx.dir,
        BENCH_NAME: 'peer',
        WEBSOCKET: ctx.websocket ? '1' : '0',
        H2C: ctx.h2c ? '1' : '0',
        ...(ctx.keepAliveTimeoutMs ? { KEEP_ALIVE_TIMEOUT_MS: String(ctx.keepAliveTimeoutMs) } : {}),
      };
      let current: Ready = await fixtures.start(env);
      // The tree below every process spawned or seen: a successor counts from its spawn, not from its first event.
      const pids = () => processTree([...pidsOf(ctx.log), ...fixtures.spawned]);
      return {
        httpPort: current.port,
        h2cPort: ctx.h2c ? current.ports.at(-1) : undefined,
        pids,
        async upgrade() {
          const startedAt = monoMs();
          const u = await fixtures.upgrade(via, current.pid, current.generation + 1, env);
          current = u.successor;
          const predecessor = u.predecessor;
          return { startedAt, readyAt: u.successor.readyAt, gone: goneWithin(() => !alive(predecessor)) };
        },
        async stop() {
          await fixtures.stop(current.pid).catch(() => undefined);
          killAll(pids());
        },
      };
    },
  };
}

/** Workers of the supervisor systems: as many as pm2's cluster instances. */
const SUPERVISOR_WORKERS = Number(process.env.BENCH_SUPERVISOR_WORKERS ?? process.env.BENCH_PM2_INSTANCES ?? 2);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/**
 * `baton start` (a master and its workers) running the plain app
 * (bench/fixtures/plain-server.ts, which has no baton code: zero-code
 * adoption), upgraded by `baton reload` (HUP: each worker slot is taken over
 * by a new worker, live connections migrate) or by `baton upgrade` (a new
 * master; the old workers drain).
 */
export function batonSupervisorSystem(command: 'reload' | 'upgrade'): SystemDefinition {
  const how =
    command === 'reload'
      ? 'HUP: a new worker per slot takes the old one over (live connections migrate)'
      : 'binary upgrade: USR2, new master ready, WINCH (the new workers take the old ones over: live connections migrate), QUIT';
  return {
    id: `baton-supervisor-${command}`,
    label: `baton supervisor ${command}`,
    description: `\`baton start\` (master + ${SUPERVISOR_WORKERS} workers) running the plain app unmodified; \`baton ${command}\`: ${how}`,
    unavailable: () => null,
    version: () => `baton ${process.env.npm_package_version ?? ''}, node ${process.version}`.replace(' ,', ','),
    supports: { h2c: true, websocket: true },
    async start(ctx: SystemContext): Promise<RunningSystem> {
      const port = await freePort();
      const h2cPort = ctx.h2c ? await freePort() : undefined;
      const cfg = path.join(ctx.dir, 'baton.yaml');
      const env = { ...plainEnv(ctx, port, h2cPort), BATON_READY_QUIET_MS: '20' };
      fs.writeFileSync(
        cfg,
        JSON.stringify({
          name: 'peer',
          app: benchFixture('plain-server'),
          workers: SUPERVISOR_WORKERS,
          runDir: ctx.dir,
          listeners: {
            http: { host: '127.0.0.1', port },
            ...(h2cPort !== undefined ? { h2c: { host: '127.0.0.1', port: h2cPort } } : {}),
          },
          env: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
          timeouts: { drainMs: 5_000 },
          upgrade: { healthWindowMs: 0 },
        }),
      );
      const master = spawn(process.execPath, [cli, 'start', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
      ctx.log.attach(master.stdout!);
      ctx.log.attach(master.stderr!);
      const ready = (pid: number | undefined, since: number) =>
        ctx.log.waitFor((e) => e.event === 'master-ready' && (pid === undefined || e.pid !== pid), 'the master ready', 60_000, since);
      let current = (await ready(undefined, 0)).pid;
      const masters = new Set([master.pid!, current]);
      const pids = () => processTree([...masters].filter(alive));
      return {
        httpPort: port,
        h2cPort,
        pids,
        async upgrade() {
          const before = pids();
          const since = ctx.log.events.length;
          const startedAt = monoMs();
          let readyAt: number;
          if (command === 'reload') {
            process.kill(current, 'SIGHUP');
            await ctx.log.waitFor((e) => e.event === 'reload-done' && e.pid === current, 'reload done', 60_000, since);
            readyAt = monoMs();
          } else {
            const done = run(process.execPath, [cli, 'upgrade', '-c', cfg]);
            const next = await ready(current, since);
            readyAt = monoMs();
            current = next.pid;
            masters.add(current);
            await done;
          }
          // The previous generation: the old workers (reload), or the old master and its workers (upgrade).
          const old = before.filter((p) => p !== current);
          return { startedAt, readyAt, gone: goneWithin(() => old.every((p) => !alive(p))) };
        },
        async stop() {
          await run(process.execPath, [cli, 'stop', '-c', cfg]).catch(() => undefined);
          killAll(pids());
        },
      };
    },
  };
}
