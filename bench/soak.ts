/**
 * Soak (`npm run soak`, opt-in, not part of `npm test`): SOAK_UPGRADES
 * upgrades (default 1000) back to back on each path of SOAK_PATHS (default
 * `takeover,reload`), under keep-alive load and a fresh-connection prober.
 * After each upgrade it samples, for the long-lived process of the path (the
 * supervisor's master, `baton run`'s own process; for the library, the
 * serving generation) and the newest serving generation: open fds and RSS, and
 * the zombies of the whole tree. It prints each trend (first, last, max,
 * least-squares slope per upgrade) and exits 1 if a trend grows — fds by more
 * than 8, RSS by more than 64 MiB over the run, any zombie at the end — or if
 * any request failed.
 */
import { alive } from '../src/core/proc.js';
import { allProcs, fdCount, rssKiB, treeOf, zombiesIn } from '../test/faults/proc-scan.js';
import { Paths, targetFor, type PathName } from '../test/faults/targets.js';
import { KeepAliveLoad, Prober, Traffic } from '../test/faults/traffic.js';
import { mean } from './lib/stats.js';

const upgrades = Number(process.env.SOAK_UPGRADES ?? 1000);
const paths = (process.env.SOAK_PATHS ?? 'takeover,reload').split(',') as PathName[];
for (const p of paths) if (!Paths.includes(p)) throw new Error(`SOAK_PATHS: unknown path ${p} (one of ${Paths.join(', ')})`);

interface Series {
  name: string;
  values: number[];
}

/** Least-squares slope of `ys` against their index. */
function slope(ys: number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

/** Growth over the run, robust to noise: mean of the last tenth minus mean of the first tenth. */
function growth(ys: number[]): number {
  const k = Math.max(1, Math.floor(ys.length / 10));
  return mean(ys.slice(-k)) - mean(ys.slice(0, k));
}

let failedRun = false;
for (const path of paths) {
  const t = targetFor(path);
  await t.start();
  const traffic = new Traffic();
  const load = new KeepAliveLoad(traffic, `http://127.0.0.1:${t.port}`, 16);
  const prober = new Prober(traffic, t.port, 5, 4);
  await traffic.servingStreak(20, 15_000);
  const longLived = path === 'takeover' || path === 'exec' ? undefined : t.roots[0]!;
  const series: Series[] = [
    { name: 'serving generation fds', values: [] },
    { name: 'serving generation RSS KiB', values: [] },
    { name: 'zombies', values: [] },
  ];
  if (longLived)
    series.push(
      { name: `${path === 'run' ? 'baton run' : 'master'} fds`, values: [] },
      { name: `${path === 'run' ? 'baton run' : 'master'} RSS KiB`, values: [] },
    );
  const started = Date.now();
  let error: string | undefined;
  for (let i = 0; i < upgrades; i++) {
    const before = new Set(traffic.byPid.keys());
    const leaving = [...before].filter((pid) => pid !== longLived && alive(pid));
    await t.upgrade();
    try {
      await traffic.next((s) => !before.has(s.pid), `upgrade ${i + 1}: a new generation answering`, 30_000);
      const deadline = Date.now() + 30_000;
      while (leaving.some(alive)) {
        if (Date.now() > deadline) throw new Error(`upgrade ${i + 1}: pids ${leaving.filter(alive).join(', ')} still alive after 30 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (err) {
      error = (err as Error).message;
      break;
    }
    const newest = traffic.recent[traffic.recent.length - 1]!.pid;
    series[0]!.values.push(fdCount(newest) ?? 0);
    series[1]!.values.push(rssKiB(newest) ?? 0);
    series[2]!.values.push(await lastingZombies(t.roots));
    if (longLived) {
      series[3]!.values.push(fdCount(longLived) ?? 0);
      series[4]!.values.push(rssKiB(longLived) ?? 0);
    }
    if ((i + 1) % 50 === 0)
      console.log(
        `${path}: ${i + 1} upgrades, ${traffic.failures.length} failed of ${traffic.sent}, ${((Date.now() - started) / 1000).toFixed(0)} s`,
      );
  }
  await Promise.all([load.stop(), prober.stop()]);
  for (const pid of treeOf(t.roots).keys()) process.kill(pid, 'SIGKILL');

  console.log(
    `\n${path}: ${series[0]!.values.length} upgrades in ${((Date.now() - started) / 1000).toFixed(0)} s; requests ${traffic.sent}, failed ${traffic.failures.length}`,
  );
  console.log(
    `${'trend'.padEnd(28)} ${'first'.padStart(8)} ${'last'.padStart(8)} ${'max'.padStart(8)} ${'slope/upgrade'.padStart(14)} ${'growth'.padStart(8)}`,
  );
  const problems: string[] = [];
  if (error) problems.push(error);
  if (traffic.failures.length > 0)
    problems.push(
      `${traffic.failures.length} failed requests: ${traffic.failures
        .slice(0, 3)
        .map((f) => f.error)
        .join('; ')}`,
    );
  for (const s of series) {
    const v = s.values;
    if (v.length === 0) continue;
    const g = growth(v);
    console.log(
      `${s.name.padEnd(28)} ${String(v[0]).padStart(8)} ${String(v[v.length - 1]).padStart(8)} ${String(Math.max(...v)).padStart(8)} ${slope(v).toFixed(4).padStart(14)} ${g.toFixed(1).padStart(8)}`,
    );
    const limit = s.name.includes('RSS') ? 64 * 1024 : s.name === 'zombies' ? 0 : 8;
    if (s.name === 'zombies' ? v[v.length - 1]! > 0 : g > limit)
      problems.push(`${s.name} grows: ${g.toFixed(1)} over the run (limit ${limit})`);
  }
  for (const p of problems) console.log(`FAIL ${path}: ${p}`);
  if (problems.length > 0) failedRun = true;
}
process.exit(failedRun ? 1 : 0);

/**
 * Zombies of the tree that stay: a child that just exited is a zombie until
 * its parent's SIGCHLD handler reaps it, a moment later; one still there after
 * 2 s is never reaped (a leak).
 */
async function lastingZombies(roots: number[]): Promise<number> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const n = zombiesIn(treeOf(roots, allProcs())).length;
    if (n === 0 || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 20));
  }
}
