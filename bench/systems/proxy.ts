/**
 * What nginx and haproxy share as systems: the plain Node app as their
 * backend, the ports they listen on, and stopping their process tree.
 */
import { killAll, monoMs } from '../lib/processes.js';
import { alive, childrenOf, processTree } from '../lib/rss.js';
import { freePort, goneWithin, until, type SystemContext, type UpgradeResult } from '../lib/system.js';
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

/**
 * A reload in which the same master forks new workers (nginx HUP, haproxy
 * USR2): sends `signal` to `master`; the new generation serves once a worker
 * that was not there before exists (workers inherit the listeners, so a
 * connection arriving earlier waits in the backlog); the old one is gone once
 * every earlier worker exited.
 */
export async function reloadWorkers(master: number, signal: NodeJS.Signals, what: string): Promise<UpgradeResult> {
  const oldWorkers = childrenOf(master);
  const startedAt = monoMs();
  process.kill(master, signal);
  await until(() => childrenOf(master).some((p) => !oldWorkers.includes(p)), `${what}: a new worker`, 30_000, 1);
  return { startedAt, readyAt: monoMs(), gone: goneWithin(() => oldWorkers.every((p) => !alive(p))) };
}
