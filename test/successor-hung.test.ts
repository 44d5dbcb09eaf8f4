/**
 * A successor that hangs after Ready (SIGSTOP at a protocol step, armed
 * through the fault-injection seam) while its predecessor drains into it,
 * under keep-alive load and a prober that opens a fresh connection for every
 * request. The predecessor's liveness Ping goes unanswered: within
 * `livenessTimeoutMs` (plus a quarter, the Ping period) it declares the
 * successor lost, kills it (SIGKILL: a stopped process cannot come back and
 * serve alongside), takes every connection it had not seen acknowledged back,
 * accepts again (draining → serving) and answers everything. The next upgrade
 * works. Both paths, hung right after sending Ready and hung on the first
 * batch of migrated connections (after it published its upgrade socket).
 *
 * The keep-alive load loses nothing. The prober may lose the few connections
 * the successor itself accepted before it froze (it accepts from just before
 * Ready): those died with it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { FreshProber, getOnce, loadOn } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture, waitGone } from './helpers/server-process.js';

const LIVENESS_TIMEOUT_MS = 1000;
/** Detection (a Ping period plus the timeout) and the kill: with margin for a loaded machine. */
const BOUND_MS = LIVENESS_TIMEOUT_MS * 1.25 + 3000;
/** Fresh connections the frozen successor may have accepted itself before it froze. */
const PROBER_LOSS_BOUND = 3;

describe('successor hung after Ready', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  const cases = [
    { via: 'takeover', point: 'successor.ready-sent' },
    { via: 'exec', point: 'successor.ready-sent' },
    { via: 'takeover', point: 'successor.connections-received' },
    { via: 'exec', point: 'successor.connections-received' },
  ] as const;
  for (const { via, point } of cases) {
    it(`${via}, frozen at ${point}: the predecessor kills it, rolls back and serves; the next upgrade works`, async (t) => {
      const faults = tempDir('baton-faults-');
      const env = {
        BATON_SOCKET_DIR: tempDir(),
        BATON_FAULTS: faults,
        LIVENESS_TIMEOUT_MS: String(LIVENESS_TIMEOUT_MS),
        KEEP_ALIVE_TIMEOUT_MS: '300000',
      };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      const origin = `http://127.0.0.1:${listening.http}`;
      const load = await loadOn(t, origin, 16);
      const prober = new FreshProber(origin);
      t.after(() => prober.stop());
      await load.waitForMore(200);

      const since = log.events.length;
      fs.writeFileSync(path.join(faults, point), 'stop');
      if (via === 'takeover') spawnFixture(fixture('server'), env, log);
      else process.kill(first.pid!, 'SIGUSR2');
      await log.waitFor((e) => e.event === 'upgrade' && e.pid === first.pid, 'the successor ready', 60_000, since);
      const readyAt = performance.now();
      const fired = await waitForFile(faults, `${point}.fired-`);
      const hungPid = Number(fired.slice(`${point}.fired-`.length));

      const warning = await log.waitFor(
        (e) =>
          e.event === 'warning' &&
          e.pid === first.pid &&
          e.code === 'ERR_BATON_SUCCESSOR_LOST' &&
          /stopped answering/.test(String(e.message)),
        'the predecessor declaring the successor lost',
        30_000,
        since,
      );
      assert.match(String(warning.message), new RegExp(`killed it \\(SIGKILL, pid ${hungPid}\\)`));
      const rolledBack = await log.waitFor(
        (e) => e.event === 'upgrade-failed' && e.pid === first.pid && e.code === 'ERR_BATON_SUCCESSOR_LOST',
        'the predecessor rolling back',
        30_000,
        since,
      );
      const rollbackMs = performance.now() - readyAt;
      assert.match(String(rolledBack.message), /rolled back/);
      assert.ok(rollbackMs < BOUND_MS, `rolled back ${rollbackMs.toFixed(0)} ms after Ready (bound ${BOUND_MS} ms)`);
      assert.deepEqual(
        log.events
          .slice(since)
          .filter((e) => e.event === 'phase' && e.pid === first.pid)
          .map((e) => (e.args as string[])[0]),
        ['handing-over', 'draining', 'serving'],
      );
      await waitGone(hungPid, 10_000);

      // Served by generation 1 again, on kept and on fresh connections.
      const okBefore = prober.ok;
      await load.waitForMore(200);
      await waitUntil(() => prober.ok >= okBefore + 5, 'the prober answered again');
      assert.deepEqual([...new Set([(await getOnce(origin)).generation])], [1]);

      // The next upgrade works (the fault fired once, and only once).
      const second = (await upgradeFixture(log, env, via, first.pid!, 2, log.events.length)).pid;
      await load.waitForGeneration((g) => g === 2);
      await log.waitEvent('exit', first.pid);

      const result = await load.stop();
      await prober.stop();
      assert.equal(result.failed, 0, `keep-alive load: ${result.errors.join('; ')}`);
      t.diagnostic(`rolled back ${rollbackMs.toFixed(0)} ms after Ready; prober ${prober.ok} ok, ${prober.failed} failed`);
      assert.ok(prober.failed <= PROBER_LOSS_BOUND, `prober: ${prober.failed} failed: ${prober.errors.join('; ')}`);
      assert.ok(prober.ok > 0);
      process.kill(second, 'SIGTERM');
      await log.waitEvent('exit', second);
    });
  }
});

/** Resolves with the name of the first file in `dir` starting with `prefix` (a fired fault: the seam renames it). */
async function waitForFile(dir: string, prefix: string): Promise<string> {
  let found: string | undefined;
  await waitUntil(() => (found = fs.readdirSync(dir).find((f) => f.startsWith(prefix))) !== undefined, `${prefix}* in ${dir}`);
  return found!;
}

/** Polls `cond` every 20 ms for up to 30 s: for facts no event reports (a file, a counter of this process). */
async function waitUntil(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
