/**
 * Migration under continuous keep-alive load: 64 busy HTTP/1.1 connections
 * (undici Pool) across 20 upgrades, takeover and exec alternating. Not one
 * request fails and the client almost never reconnects — each connection moves
 * to the successor right after the response it was waiting for — whereas the
 * same load with migration disabled reconnects every connection at every
 * upgrade (the contrast run).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, predecessorDone, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

const CONNECTIONS = 64;
// A slice; long runs of upgrades under load are the soak's (`npm run soak`).
const UPGRADES = 8;
const CONTRAST_UPGRADES = 3;
/** Reconnects tolerated over the whole migrating run (without migration: ≥ 64 per upgrade). */
const SLACK = 20;

interface DoneReport {
  drained: number;
  forced: number;
  migrated: number;
}

/**
 * Runs `upgrades` upgrades under load and returns what each predecessor
 * reported and the pool's connects before and after each upgrade.
 */
async function upgradesUnderLoad(
  log: EventLog,
  env: NodeJS.ProcessEnv,
  upgrades: number,
): Promise<{ load: HttpLoad; reports: DoneReport[]; connects: number[]; last: number }> {
  const first = spawnFixture(fixture('server'), env, log);
  const listening = await log.waitEvent('listening', first.pid);
  await log.waitEvent('ready', first.pid);
  const load = new HttpLoad(`http://127.0.0.1:${listening.http}`, CONNECTIONS);
  // Every connection of the pool is open and busy before the first upgrade.
  await load.waitForMore(CONNECTIONS * 4);
  const connects = [load.connects];
  const reports: DoneReport[] = [];
  let current = first.pid!;
  for (let g = 2; g <= upgrades + 1; g++) {
    const via = g % 2 === 0 ? 'takeover' : 'exec';
    const since = log.events.length;
    const ready = await upgradeFixture(log, env, via, current, g, since);
    reports.push(await predecessorDone(log, ready, since, 30_000));
    await log.waitEvent('exit', current);
    current = ready.pid;
    // The client sees the new generation, then keeps going on whatever connections it has now.
    await load.waitForGeneration((n) => n === g);
    await load.waitForMore(CONNECTIONS * 4);
    connects.push(load.connects);
  }
  return { load, reports, connects, last: current };
}

describe('migration under keep-alive load', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it(`${CONNECTIONS} busy connections across ${UPGRADES} upgrades: 0 failed requests, almost no reconnect`, async () => {
    const { load, reports, connects, last } = await upgradesUnderLoad(log, { BATON_SOCKET_DIR: tempDir() }, UPGRADES);
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    for (let g = 1; g <= UPGRADES + 1; g++) assert.ok((result.generations.get(g) ?? 0) > 0, `no response from generation ${g}`);
    assert.equal(connects[0], CONNECTIONS);
    const reconnects = load.connects - CONNECTIONS;
    assert.ok(
      reconnects <= SLACK,
      `${reconnects} reconnects over ${UPGRADES} upgrades (connects after each: ${connects.join(', ')}); at most ${SLACK} expected`,
    );
    reports.forEach((r, i) => {
      assert.equal(r.forced, 0, `generation ${i + 1} forced ${r.forced}`);
      assert.equal(r.migrated + r.drained, CONNECTIONS, `generation ${i + 1}: ${JSON.stringify(r)}`);
    });
    const migrated = reports.reduce((n, r) => n + r.migrated, 0);
    assert.ok(migrated >= UPGRADES * CONNECTIONS - SLACK, `only ${migrated} connections migrated over ${UPGRADES} upgrades`);
    process.kill(last, 'SIGTERM');
    await log.waitEvent('exit', last);
  });

  it(`contrast, migration disabled: every connection reconnects at each of ${CONTRAST_UPGRADES} upgrades`, async () => {
    const { load, reports, connects, last } = await upgradesUnderLoad(
      log,
      { BATON_SOCKET_DIR: tempDir(), MIGRATE: '0' },
      CONTRAST_UPGRADES,
    );
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    for (const [i, r] of reports.entries()) {
      assert.deepEqual({ migrated: r.migrated, forced: r.forced }, { migrated: 0, forced: 0 }, `upgrade ${i + 1}`);
      // The pool's connections, less at most one between a close and its replacement when the upgrade began.
      assert.ok(r.drained >= CONNECTIONS - 1, `upgrade ${i + 1}: only ${r.drained} connections drained`);
      // Every connection the old generation closed came back as a new one.
      const reconnects = connects[i + 1]! - connects[i]!;
      assert.ok(
        reconnects >= r.drained,
        `upgrade ${i + 1}: ${reconnects} reconnects for ${r.drained} drained (connects: ${connects.join(', ')})`,
      );
    }
    process.kill(last, 'SIGTERM');
    await log.waitEvent('exit', last);
  });
});
