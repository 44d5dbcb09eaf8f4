/**
 * TLS session resumption across generations (issue 16): a client reconnects
 * after each of 10 upgrades with the session it got from the previous
 * generation, by TLS 1.3 ticket and by TLS 1.2 ticket, and every reconnect
 * resumes (`isSessionReused()`) on the new generation — the successor was
 * handed the predecessor's session-ticket keys. Paths: library takeover,
 * library exec; `baton run` in tls-resumption-run.test.ts, `baton start`'s
 * reload with 2 workers in tls-resumption-supervisor.test.ts. The contrast
 * runs (tlsTicketKeys off) resume none across an upgrade, while a reconnect
 * within one generation still resumes: the client can resume, only the keys
 * are missing. Keep-alive HTTPS load runs throughout: 0 failed requests.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { EventLog, fixture, killAll, spawnFixture, tempDir, type FixtureEvent } from './helpers/server-process.js';
import { Reconnector, UPGRADES, VERSIONS, assertNoFailures, httpsLoad } from './helpers/tls-client.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

describe('library: the successor gets the ticket keys', () => {
  for (const via of ['takeover', 'exec'] as const) {
    for (const keys of [true, false]) {
      test(`${via}, ${keys ? 'keys handed over' : 'contrast: tlsTicketKeys: false'}: ${UPGRADES} upgrades, reconnects ${keys ? 'all' : 'never'} resume`, async (t) => {
        const dir = tempDir('baton-tls-');
        const env = { BATON_SOCKET_DIR: dir, ...(keys ? {} : { TLS_TICKET_KEYS: '0' }) };
        const since0 = log.events.length;
        spawnFixture(fixture('tls-server'), env, log);
        let ready = await log.waitFor((e) => e.event === 'ready' && e.generation === 1, 'generation 1 ready', 30_000, since0);
        const port = ready.port as number;
        const load = await httpsLoad(t, port);
        const client = new Reconnector(port);
        await client.begin();
        // Within one generation a reconnect resumes in either run: the client side can resume.
        await client.reconnect((pid) => pid === ready.pid, 'same generation');
        assert.equal(client.resumed, VERSIONS.length, 'reconnects within a generation resume');
        client.resumed = client.tried = 0;
        for (let i = 1; i <= UPGRADES; i++) {
          const since = log.events.length;
          if (via === 'takeover') spawnFixture(fixture('tls-server'), env, log);
          else process.kill(ready.pid, 'SIGUSR2');
          const gen = i + 1;
          const nextReady: FixtureEvent = await log.waitFor(
            (e) => e.event === 'ready' && e.generation === gen,
            `generation ${gen} ready`,
            30_000,
            since,
          );
          assert.equal(nextReady.origin, via);
          ready = nextReady;
          await client.reconnect((pid) => pid === nextReady.pid, `upgrade ${i}`);
        }
        assert.equal(client.tried, UPGRADES * VERSIONS.length);
        assert.equal(client.resumed, keys ? client.tried : 0, `${client.resumed} of ${client.tried} reconnects resumed`);
        await assertNoFailures(load);
        const warnings = log.events.slice(since0).filter((e) => e.event === 'warning' || e.event === 'upgrade-failed');
        assert.deepEqual(warnings, []);
        process.kill(ready.pid, 'SIGTERM');
      });
    }
  }
});
