/**
 * TLS session resumption across generations (issue 16): a client reconnects
 * after each of 10 upgrades with the session it got from the previous
 * generation, by TLS 1.3 ticket and by TLS 1.2 ticket, and every reconnect
 * resumes (`isSessionReused()`) on the new generation — the successor was
 * handed the predecessor's session-ticket keys. Paths: library takeover,
 * library exec, `baton run`, and `baton start`'s reload with 2 workers (the
 * master's keys, shared by every worker and every reload). The contrast
 * runs (tlsTicketKeys off) resume none across an upgrade, while a reconnect
 * within one generation still resumes: the client can resume, only the keys
 * are missing. Keep-alive HTTPS load runs throughout: 0 failed requests.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';
import { HttpLoad } from './helpers/http-load.js';
import { AppRunner, appFile } from './helpers/adopt.js';
import { EventLog, fixture, killAll, spawnFixture, tempDir, type FixtureEvent } from './helpers/server-process.js';
import { next, startMaster, writeAppConfig } from './helpers/supervisor.js';

const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  apps.killAll();
  killAll(log.events.map((e) => e.pid));
});

const ca = fs.readFileSync(appFile('tls/cert.pem'));
const UPGRADES = 10;
type Version = 'TLSv1.3' | 'TLSv1.2';
const VERSIONS: Version[] = ['TLSv1.3', 'TLSv1.2'];

/** One GET on a new TLS connection of `version`, offering `session`: who served it, whether the session resumed, and the session to offer next. */
async function tlsGet(
  port: number,
  version: Version,
  session?: Buffer,
): Promise<{ pid: number; reused: boolean; session: Buffer | undefined }> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', minVersion: version, maxVersion: version, session });
  let latest: Buffer | undefined;
  socket.on('session', (s: Buffer) => (latest = s));
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await once(socket, 'secureConnect');
  const reused = socket.isSessionReused();
  socket.end('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString();
  assert.match(text, /^HTTP\/1\.1 200 /, `response: ${text.slice(0, 200)}`);
  const pid = Number(/x-pid: (\d+)/i.exec(text)?.[1]);
  return { pid, reused, session: latest };
}

/** A client that keeps one session per TLS version and reconnects with it; counts the reconnects that resumed. */
class Reconnector {
  readonly #sessions = new Map<Version, Buffer | undefined>();
  resumed = 0;
  tried = 0;
  constructor(readonly port: number) {}

  /** A first connection of each version (no session to offer yet). */
  async begin(): Promise<void> {
    for (const v of VERSIONS) this.#sessions.set(v, (await tlsGet(this.port, v)).session);
  }

  /** Reconnects with each version's session; every response must come from a pid `servedBy` accepts. Returns the pids. */
  async reconnect(servedBy: (pid: number) => boolean, what: string): Promise<number[]> {
    const pids: number[] = [];
    for (const v of VERSIONS) {
      const session = this.#sessions.get(v);
      assert.ok(session, `${what}: ${v}: the previous connection got a session ticket`);
      const r = await tlsGet(this.port, v, session);
      assert.ok(servedBy(r.pid), `${what}: ${v} reconnect served by pid ${r.pid}`);
      this.tried++;
      if (r.reused) this.resumed++;
      // A connection that got no new ticket leaves the one it resumed with (OpenSSL's tickets are stateless: reusable).
      this.#sessions.set(v, r.session ?? session);
      pids.push(r.pid);
    }
    return pids;
  }
}

/** Keep-alive HTTPS load on `port`, stopped at the end of `t`. */
async function httpsLoad(t: { after(fn: () => unknown): void }, port: number): Promise<HttpLoad> {
  const load = new HttpLoad(`https://127.0.0.1:${port}`, 4, '/', { connect: { ca } });
  t.after(() => load.stop());
  await load.waitForMore(20);
  return load;
}

async function assertNoFailures(load: HttpLoad): Promise<void> {
  await load.waitForMore(20);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
}

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

describe('baton start: 2 workers share the master keys, reloads keep them', () => {
  for (const keys of [true, false]) {
    test(`${keys ? 'tlsTicketKeys (default)' : 'contrast: tlsTicketKeys: false'}: ${UPGRADES} reloads, reconnects to either worker ${keys ? 'all resume' : 'after a reload never resume'}`, async (t) => {
      const dir = tempDir('baton-tls-sup-');
      const { port, cfg } = await writeAppConfig(dir, appFile('https.mjs'), keys ? '' : 'tlsTicketKeys: false');
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
