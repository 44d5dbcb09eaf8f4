/**
 * TLS session resumption across binary upgrades under `baton start` (issue
 * 16): on USR2 the new master asks the old one for its session-ticket keys
 * over the IPC channel the two share, so its workers serve with the same
 * keys, and so does every master after it. An HTTPS client holding a ticket
 * of the old master's workers reconnects after each of several upgrades
 * (USR2, new master ready, QUIT to the old one, which exits once its workers
 * drained) and resumes its session every time; with config
 * `tlsTicketKeys: false` (contrast) none does. Keep-alive HTTPS load
 * throughout: 0 failed requests. No key appears in the masters' log.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { next, startMaster, statusOf, writeAppConfig } from './helpers/supervisor.js';
import { Reconnector, VERSIONS, assertNoFailures, httpsLoad } from './helpers/tls-client.js';
import { sized } from './helpers/size.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** Binary upgrades per run: each one starts a master and 2 workers and waits for the old master's exit. */
const UPGRADES = { keys: sized(10, 4), contrast: sized(5, 3) };

describe('baton start: binary upgrades (USR2) keep the TLS session-ticket keys', () => {
  for (const keys of [true, false]) {
    const upgrades = keys ? UPGRADES.keys : UPGRADES.contrast;
    test(`${keys ? 'tlsTicketKeys (default)' : 'contrast: tlsTicketKeys: false'}: after each of ${upgrades} binary upgrades the reconnect ${keys ? 'resumes' : 'never resumes'}`, async (t) => {
      const dir = tempDir('baton-tls-usr2-');
      const { port, cfg } = await writeAppConfig(dir, appFile('https.mjs'), keys ? {} : { extra: 'tlsTicketKeys: false' });
      const first = await startMaster(log, cfg);
      const masters = [first.pid];
      t.after(() => killAll(masters));
      const load = await httpsLoad(t, port);
      const client = new Reconnector(port);
      await client.begin();
      let current = first.pid;
      const resumedAfter: number[] = [];
      for (let i = 1; i <= upgrades; i++) {
        const mark = log.events.length;
        process.kill(current, 'SIGUSR2');
        const ready = await next(log, `upgrade ${i}: new master ready`, (e) => e.event === 'master-ready' && e.pid !== current, mark);
        masters.push(ready.pid);
        const inherited = log.events.slice(mark).find((e) => e.event === 'ticket-keys-inherited' && e.pid === ready.pid);
        if (keys) assert.deepEqual(inherited?.listeners, ['http'], `upgrade ${i}: the new master took the old one's keys`);
        else assert.equal(inherited, undefined, `upgrade ${i}: tlsTicketKeys: false: no keys asked for`);
        // QUIT: the old master's workers drain (TLS connections cannot move), then it exits and the new one is alone.
        process.kill(current, 'SIGQUIT');
        await next(log, `upgrade ${i}: old master exited`, (e) => e.event === 'master-exited' && e.pid === current, mark);
        await next(log, `upgrade ${i}: new master alone`, (e) => e.event === 'old-master-gone' && e.pid === ready.pid, mark);
        const workers = new Set((await statusOf(dir, ready.pid)).workers.map((w) => w.pid));
        assert.equal(workers.size, 2);
        // The reconnect offers the ticket a worker of the previous master gave.
        const before = client.resumed;
        await client.reconnect((p) => workers.has(p), `upgrade ${i}`);
        resumedAfter.push(client.resumed - before);
        current = ready.pid;
      }
      const total = upgrades * VERSIONS.length;
      const resumed = resumedAfter.reduce((a, b) => a + b, 0);
      assert.equal(
        resumed,
        keys ? total : 0,
        `${resumed} of ${total} reconnects after an upgrade resumed (by upgrade: ${resumedAfter.join(' ')})`,
      );
      await assertNoFailures(load);
      // The keys travelled only over the masters' IPC channel: no 48-byte base64 value in any log line.
      assert.equal(log.output.filter((l) => /[A-Za-z0-9+/]{64}/.test(l)).length, 0, 'no ticket key in the log');
      process.kill(current, 'SIGTERM');
    });
  }
});
