/**
 * What nginx and haproxy share as systems: the plain Node app as their
 * backend, the ports they listen on, and stopping their process tree.
 */
import { killAll } from '../lib/processes.js';
import { alive, processTree } from '../lib/rss.js';
import { freePort, until, type SystemContext } from '../lib/system.js';
import { plainEnv, startPlainApp, stopPlainApp, type PlainApp } from './plain.js';

/** A proxy's backend (already listening) and the free ports the proxy is to listen on. */
export interface ProxySetup {
  backend: PlainApp;
  port: number;
  h2cPort: number | undefined;
}

/** Starts the backend and picks the proxy's ports. */
export async function proxySetup(ctx: SystemContext): Promise<ProxySetup> {
  const backend = await startPlainApp(ctx.log, plainEnv(ctx, 0, undefined));
  return { backend, port: await freePort(), h2cPort: ctx.h2c ? await freePort() : undefined };
}

/** Sends `signal` to the proxy's masters, waits (15 s at most, then SIGKILL) until its whole tree is gone, then stops the backend. */
export async function stopProxy(masters: number[], signal: NodeJS.Signals, backend: PlainApp): Promise<void> {
  const all = processTree(masters);
  for (const m of masters) if (alive(m)) process.kill(m, signal);
  await until(() => all.every((p) => !alive(p)), 'proxy exit', 15_000).catch(() => killAll(all));
  await stopPlainApp(backend);
}
