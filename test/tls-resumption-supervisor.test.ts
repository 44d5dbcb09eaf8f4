/**
 * TLS session resumption under `baton start` (issue 16): 2 workers of an
 * unmodified HTTPS app share the master's session-ticket keys, and every
 * reload's workers get the same ones, so a reconnect after each of 10
 * reloads resumes whichever worker it reaches; with config
 * `tlsTicketKeys: false` none right after a reload does. Keep-alive HTTPS
 * load throughout: 0 failed requests.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { next, startMaster, writeAppConfig } from './helpers/supervisor.js';
import { Reconnector, UPGRADES, VERSIONS, assertNoFailures, httpsLoad, tlsGet } from './helpers/tls-client.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

describe('baton start: 2 workers share the master keys, reloads keep them', () => {
  for (const keys of [true, false]) {
    test(`${keys ? 'tlsTicketKeys (default)' : 'contrast: tlsTicketKeys: false'}: ${UPGRADES} reloads, reconnects to either worker ${keys ? 'all resume' : 'after a reload never resume'}`, async (t) => {
      const dir = tempDir('baton-tls-sup-');
      const { port, cfg } = await writeAppConfig(dir, appFile('https.mjs'), keys ? {} : { extra: 'tlsTicketKeys: false' });
      const master = await startMaster(log, cfg);
      t.after(() => killAll([master.pid]));
      const load = await httpsLoad(t, port);
      const client = new Reconnector(port);
      await client.begin();
      let old = new Set<number>();
      let acrossResumed = 0;
      let workersSeen = 0;
      for (let i = 1; i <= UPGRADES; i++) {
        const mark = log.events.length;
        // Who served before this reload (the workers of the previous generation).
        for (let j = 0; j < 4; j++) old.add((await tlsGet(port, 'TLSv1.3')).pid);
        process.kill(master.pid, 'SIGHUP');
        await next(log, 'reload done', (e) => e.event === 'reload-done' && e.pid === master.pid, mark);
        const served = new Set<number>();
        // The first reconnect offers a session of the previous generation's workers.
        const before = client.resumed;
        for (const p of await client.reconnect((p) => !old.has(p), `reload ${i}`)) served.add(p);
        acrossResumed += client.resumed - before;
        // More reconnects, with sessions of this generation: the kernel spreads them over both workers.
        for (let j = 0; j < 3; j++) for (const p of await client.reconnect((p) => !old.has(p), `reload ${i}`)) served.add(p);
        old = served;
        workersSeen += served.size;
      }
      assert.ok(workersSeen > UPGRADES, 'some reloads served the reconnects by both workers');
      const across = UPGRADES * VERSIONS.length;
      assert.equal(acrossResumed, keys ? across : 0, `${acrossResumed} of ${across} reconnects after a reload resumed`);
      // With the master's keys every reconnect resumes, whichever worker it reaches; without, only some (same worker).
      if (keys) assert.equal(client.resumed, client.tried, `${client.resumed} of ${client.tried} reconnects resumed`);
      await assertNoFailures(load);
      master.child.kill('SIGTERM');
    });
  }
});
