/**
 * baton's systems: the bench fixture (bench/fixtures/baton-server.ts) upgraded
 * by takeover (a second process of the same server) or by exec (SIGUSR2: the
 * running generation spawns its successor), and the supervisor's reload and
 * upgrade, which are not built yet (issue 4) and therefore report themselves
 * as skipped.
 */
import { BatonFixtures, type Ready, type Via } from '../lib/baton-fixture.js';
import { killAll, monoMs, pidsOf } from '../lib/processes.js';
import { alive, processTree } from '../lib/rss.js';
import { goneWithin, type RunningSystem, type SystemContext, type SystemDefinition } from '../lib/system.js';

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

/** The supervisor's commands (`baton reload`, `baton upgrade`): listed so the report shows the gap. */
export function batonSupervisorSystem(command: 'reload' | 'upgrade'): SystemDefinition {
  return {
    id: `baton-supervisor-${command}`,
    label: `baton supervisor ${command}`,
    description: `\`baton start\` (master + workers) upgraded by \`baton ${command}\``,
    // Filled in by the supervisor work (issue 4): start = `baton start`, upgrade = `baton ${command}`,
    // readiness = the master's report, stop = `baton stop`.
    unavailable: () => 'not built yet: the supervisor (issue 4) is not on this branch',
    version: () => '',
    supports: { h2c: true, websocket: true },
    start: () => Promise.reject(new Error(`baton supervisor ${command}: not built yet`)),
  };
}
