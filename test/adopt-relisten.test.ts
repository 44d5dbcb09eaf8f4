/**
 * An unmodified app that restarts its server in-process (close(), then
 * listen() again on the same port, as dev reloaders do) keeps serving under
 * `baton run`: the closed server releases its listener name, the listening
 * socket is held meanwhile and handed back to the re-listen, so the port
 * never stops accepting — under keep-alive load and across upgrades, 0
 * failed requests, and the app never exits but by draining.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Client } from 'undici';
import { HttpLoad } from './helpers/http-load.js';
import { AppRunner } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

const UPGRADES = 5;
const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  killAll(log.events.map((e) => e.pid));
  apps.killAll();
});

/** Asks the app to restart its server; resolves with the pid that did, once it listens again (or ignored it while draining). */
async function relisten(origin: string): Promise<{ pid: number; event: string; port?: number }> {
  const client = new Client(origin);
  try {
    const since = log.events.length;
    const res = await client.request({ path: '/relisten', method: 'GET', headers: { connection: 'close' } });
    await res.body.text();
    assert.equal(res.statusCode, 200);
    const pid = Number(res.headers['x-pid']);
    const e = await log.waitFor(
      (x) => x.pid === pid && (x.event === 'app-relistened' || x.event === 'listen-ignored' || x.event === 'app-error'),
      `pid ${pid} listening again`,
      20_000,
      since,
    );
    return { pid, event: e.event, port: e.port as number | undefined };
  } finally {
    await client.close();
  }
}

describe('an app that closes its server and listens again', () => {
  test(`re-listens back to back under keep-alive load and ${UPGRADES} upgrades: same port, 0 failed, never exits`, async (t) => {
    const dir = tempDir('baton-relisten-');
    let pid = (await apps.run(dir, 'relisten.mjs').ready()).pid;
    const port = apps.portOf(pid);
    const origin = `http://127.0.0.1:${port}`;
    const load = new HttpLoad(origin, 32);
    t.after(() => load.stop());
    await load.waitForMore(100);

    const done: { pid: number; event: string; port?: number }[] = [];
    let running = true;
    const driver = (async () => {
      while (running) done.push(await relisten(origin));
    })();
    const relistenedBy = (p: number) => done.filter((d) => d.pid === p && d.event === 'app-relistened').length;
    const pids = [pid];
    for (let i = 0; i <= UPGRADES; i++) {
      // Each generation restarts its server several times under load before it is replaced.
      const target = relistenedBy(pid) + 5;
      while (relistenedBy(pid) < target) {
        const since = log.events.length;
        await log.waitFor((e) => e.event === 'app-relistened' && e.pid === pid, `pid ${pid} re-listening`, 30_000, since);
      }
      await load.waitForMore(50);
      if (i < UPGRADES) {
        pid = await apps.upgrade(dir, 'relisten.mjs', pid);
        pids.push(pid);
      }
    }
    running = false;
    await driver;
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
    assert.deepEqual(
      log.events.filter((e) => e.event === 'app-error'),
      [],
      'no listen() of the app failed',
    );
    for (const d of done.filter((x) => x.event === 'app-relistened')) assert.equal(d.port, port, 'the re-listen got the same port');
    for (const p of pids) assert.ok(relistenedBy(p) >= 5, `pid ${p} re-listened ${relistenedBy(p)} times`);
    // Every old generation left by draining into its successor, none died.
    for (const p of pids.slice(0, -1))
      assert.ok(
        log.events.some((e) => e.event === 'drained' && e.pid === p),
        `pid ${p} drained`,
      );
    assert.ok(result.pids.has(pid), 'the last generation served');
    process.kill(pid, 'SIGTERM');
    await log.waitFor((e) => e.event === 'drained' && e.pid === pid, 'the last generation stopped', 30_000);
  });
});
