/**
 * The plain Node app (bench/fixtures/plain-server.ts): a plain stop-and-start
 * system, and the backend that nginx and haproxy front.
 */
import type { ChildProcess } from 'node:child_process';
import { benchFixture, monoMs, spawnFixture, type EventLog } from '../lib/processes.js';
import { alive } from '../lib/rss.js';
import { freePort, type RunningSystem, type SystemContext, type SystemDefinition } from '../lib/system.js';

/** A running plain-server process. */
export interface PlainApp {
  child: ChildProcess;
  pid: number;
  port: number;
  h2cPort: number | undefined;
}

/** Environment of the plain app for a context: the same features the baton fixture gets. */
export function plainEnv(ctx: SystemContext, port: number, h2cPort: number | undefined): NodeJS.ProcessEnv {
  return {
    PORT: String(port),
    ...(h2cPort !== undefined ? { H2C_PORT: String(h2cPort) } : {}),
    WEBSOCKET: ctx.websocket ? '1' : '0',
    GRACEFUL: '1',
    ...(ctx.keepAliveTimeoutMs ? { KEEP_ALIVE_TIMEOUT_MS: String(ctx.keepAliveTimeoutMs) } : {}),
  };
}

/** Starts the plain app and waits for its 'listening' event. */
export async function startPlainApp(log: EventLog, env: NodeJS.ProcessEnv): Promise<PlainApp> {
  const since = log.events.length;
  const child = spawnFixture(benchFixture('plain-server'), env, log);
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) => reject(new Error(`plain server exited (${signal ?? code}): ${log.output.slice(-5).join('\n')}`))),
  );
  const e = await Promise.race([
    log.waitFor((ev) => ev.event === 'listening' && ev.pid === child.pid, 'plain server listening', 30_000, since),
    exited,
  ]);
  return { child, pid: child.pid!, port: e.port as number, h2cPort: (e.h2cPort as number | null) ?? undefined };
}

/** Stops the plain app (SIGTERM: graceful, see the fixture) and resolves once it exited. */
export function stopPlainApp(app: PlainApp): Promise<void> {
  if (app.child.exitCode !== null || app.child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => app.child.once('exit', () => resolve()));
  app.child.kill('SIGTERM');
  return exited;
}

/** Plain stop-and-start: SIGTERM (the app closes gracefully), wait for the exit, start the new version. */
export const plainRestart: SystemDefinition = {
  id: 'plain-restart',
  label: 'plain restart',
  description:
    'the hello app on plain Node (one process); upgrade: SIGTERM (graceful close: stop accepting, finish in-flight requests), wait for the exit, start the new process',
  unavailable: () => null,
  version: () => `node ${process.version}`,
  supports: { h2c: true, websocket: true },
  async start(ctx: SystemContext): Promise<RunningSystem> {
    // Fixed ports: the new process must bind the same ones.
    const port = await freePort();
    const h2cPort = ctx.h2c ? await freePort() : undefined;
    const env = plainEnv(ctx, port, h2cPort);
    let app = await startPlainApp(ctx.log, env);
    return {
      httpPort: port,
      h2cPort,
      pids: () => (alive(app.pid) ? [app.pid] : []),
      async upgrade() {
        const startedAt = monoMs();
        await stopPlainApp(app);
        const goneAt = monoMs();
        app = await startPlainApp(ctx.log, env);
        return { startedAt, readyAt: monoMs(), gone: () => Promise.resolve(goneAt) };
      },
      stop: () => stopPlainApp(app),
    };
  },
};
