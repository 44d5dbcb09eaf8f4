/**
 * The core promise: an HTTP/1.1 server under continuous keep-alive load from an
 * independent client (undici, 64 connections) is upgraded 20 times in a row by
 * each path, and not one request fails.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

const UPGRADES = 20;
const CONNECTIONS = 64;

for (const path of ['takeover', 'exec'] as const) {
  describe(`${path} upgrades under keep-alive load`, () => {
    const log = new EventLog();
    after(() => killAll(pidsOf(log)));

    it(`upgrades ${UPGRADES} times with 0 failed requests`, async () => {
      const dir = tempDir();
      const env = { BATON_SOCKET_DIR: dir };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      const ready = await log.waitEvent('ready', first.pid);
      assert.equal(ready.generation, 1);
      assert.equal(ready.origin, 'fresh');

      const load = new HttpLoad(`http://127.0.0.1:${listening.http}`, CONNECTIONS);
      await load.waitForGeneration((g) => g === 1);
      let current = first.pid!;
      const readyPids = [current];
      for (let i = 2; i <= UPGRADES + 1; i++) {
        const since = log.events.length;
        const next = await upgradeFixture(log, env, path, current, i, since);
        assert.notEqual(next.pid, current);
        await log.waitFor((e) => e.event === 'upgrade' && e.pid === current, `generation ${i - 1} handing over`, 60_000, since);
        // The client itself sees the switch: a response from the new generation.
        await load.waitForGeneration((g) => g === i);
        current = next.pid;
        readyPids.push(current);
      }
      const result = await load.stop();
      assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
      assert.ok(result.ok > UPGRADES * CONNECTIONS, `only ${result.ok} requests completed`);
      assert.equal(new Set(readyPids).size, UPGRADES + 1, 'every generation has its own pid');
      for (let g = 1; g <= UPGRADES + 1; g++) assert.ok(result.generations.get(g)! > 0, `no response from generation ${g}`);

      // Every predecessor drains and exits by itself.
      for (const pid of readyPids.slice(0, -1)) await log.waitEvent('exit', pid);
      process.kill(current, 'SIGTERM');
      await log.waitEvent('exit', current);

      // The public phase machine, as each process emitted it, in order.
      // The fixture reports the phase at start() (a successor is already taking over), then each transition.
      const phases = (pid: number) =>
        log.events
          .filter((e) => (e.event === 'phase' || e.event === 'started') && e.pid === pid)
          .map((e) => (e.event === 'started' ? e.phase : (e.args as string[])[0]));
      assert.deepEqual(phases(readyPids[0]!), ['starting', 'serving', 'handing-over', 'draining', 'exited']);
      for (const pid of readyPids.slice(1, -1))
        assert.deepEqual(phases(pid), ['taking-over', 'serving', 'handing-over', 'draining', 'exited']);
      assert.deepEqual(phases(current), ['taking-over', 'serving', 'draining', 'exited']);
    });
  });
}
