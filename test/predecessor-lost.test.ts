/**
 * The predecessor killed (SIGKILL, armed through the fault-injection seam) in
 * the middle of a handover, before its successor's start() got the listeners
 * and the state: right after it read the successor's Hello, and right after
 * it sent the Listeners frame. The successor carries on as a generation of its
 * own instead of giving up: it keeps the listeners it holds (inherited on the
 * exec path, received on the takeover path once the Listeners frame came),
 * binds the others on the same ports, warns (ERR_BATON_PREDECESSOR_LOST),
 * serves, publishes its upgrade socket and can be upgraded in turn.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { freshRequests } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

describe('predecessor killed before the successor has its listeners', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  const cases = [
    { via: 'takeover', point: 'predecessor.hello-received', origins: ['bound', 'bound'], generation: 1 },
    { via: 'takeover', point: 'predecessor.listeners-sent', origins: ['inherited', 'inherited'], generation: 2 },
    { via: 'exec', point: 'predecessor.hello-received', origins: ['inherited', 'inherited'], generation: 1 },
    { via: 'exec', point: 'predecessor.listeners-sent', origins: ['inherited', 'inherited'], generation: 2 },
  ] as const;
  for (const { via, point, origins, generation } of cases) {
    it(`${via}, predecessor killed at ${point}: the successor binds or keeps the listeners and serves`, async () => {
      const faults = tempDir('baton-faults-');
      const base = { BATON_SOCKET_DIR: tempDir(), BATON_FAULTS: faults };
      const first = spawnFixture(fixture('server'), base, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      // The same ports for every later generation, as a deployment's config would give them.
      const env = { ...base, PORT: String(listening.http), H2C_PORT: String(listening.h2c) };
      const origin = `http://127.0.0.1:${listening.http}`;
      assert.deepEqual(new Set(await freshRequests(origin, 3)), new Set([1]));

      const since = log.events.length;
      fs.writeFileSync(path.join(faults, point), 'kill');
      if (via === 'takeover') spawnFixture(fixture('server'), env, log);
      else process.kill(first.pid!, 'SIGUSR2');
      const ready = await log.waitFor((e) => e.event === 'ready' && e.pid !== first.pid, 'the successor ready', 60_000, since);
      assert.ok(fs.existsSync(path.join(faults, `${point}.fired-${first.pid}`)), 'the predecessor was killed at that step');
      assert.equal(ready.origin, via);
      assert.equal(ready.generation, generation);
      const warning = await log.waitFor(
        (e) => e.event === 'warning' && e.pid === ready.pid && e.code === 'ERR_BATON_PREDECESSOR_LOST',
        'the successor reporting its lost predecessor',
        10_000,
        since,
      );
      assert.match(String(warning.message), /carries on alone/);
      const listened = log.events.slice(since).find((e) => e.event === 'listening' && e.pid === ready.pid)!;
      assert.deepEqual(listened.origins, [...origins]);
      assert.equal(listened.http, listening.http);
      assert.deepEqual(new Set(await freshRequests(origin, 3)), new Set([generation]));

      // It is a full generation: the next upgrade reaches it.
      const next = await upgradeFixture(log, env, 'takeover', ready.pid, generation + 1, log.events.length);
      await log.waitEvent('exit', ready.pid);
      assert.deepEqual(new Set(await freshRequests(origin, 3)), new Set([generation + 1]));
      process.kill(next.pid, 'SIGTERM');
      await log.waitEvent('exit', next.pid);
    });
  }
});
