/**
 * TLS session resumption under `baton run` (issue 16): an unmodified HTTPS
 * app, upgraded 10 times by running it again; every reconnect with the
 * previous generation's session resumes, none with --no-tls-ticket-keys.
 * Keep-alive HTTPS load throughout: 0 failed requests. (The library's paths:
 * tls-resumption.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { AppRunner } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { Reconnector, UPGRADES, assertNoFailures, httpsLoad } from './helpers/tls-client.js';

const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  apps.killAll();
  killAll(log.events.map((e) => e.pid));
});

describe('baton run: an unmodified HTTPS app', () => {
  for (const keys of [true, false]) {
    test(`${keys ? 'keys handed over' : 'contrast: --no-tls-ticket-keys'}: ${UPGRADES} upgrades, reconnects ${keys ? 'all' : 'never'} resume`, async (t) => {
      const dir = tempDir('baton-tls-run-');
      const flags = keys ? [] : ['--no-tls-ticket-keys'];
      let pid = (await apps.run(dir, 'https.mjs', {}, flags).ready()).pid;
      const port = apps.portOf(pid);
      const load = await httpsLoad(t, port);
      const client = new Reconnector(port);
      await client.begin();
      for (let i = 1; i <= UPGRADES; i++) {
        const since = log.events.length;
        apps.run(dir, 'https.mjs', {}, flags);
        const ready = await log.waitFor((e) => e.event === 'ready' && e.pid !== pid, `generation ${i + 1} ready`, 30_000, since);
        // The predecessor stopped accepting already: the successor's ready() resolves after its Draining frame.
        pid = ready.pid;
        await client.reconnect((p) => p === pid, `upgrade ${i}`);
      }
      assert.equal(client.resumed, keys ? client.tried : 0, `${client.resumed} of ${client.tried} reconnects resumed`);
      await assertNoFailures(load);
      process.kill(pid, 'SIGTERM');
    });
  }
});
