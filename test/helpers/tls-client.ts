/**
 * TLS clients for the session-resumption tests: one GET per new TLS
 * connection offering a session (raw HTTP/1.1 over tls.connect, so the test
 * controls the session and reads isSessionReused()), a client that
 * reconnects with the session of its previous connection, and keep-alive
 * HTTPS load. The test certificate is test/apps/tls's.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import tls from 'node:tls';
import { HttpLoad } from './http-load.js';
import { appFile } from './adopt.js';
import { sized } from './size.js';

export const ca = fs.readFileSync(appFile('tls/cert.pem'));
/** Upgrades per run: a representative slice in `npm test`, 10 under BATON_TEST_FULL=1 (helpers/size.ts). */
export const UPGRADES = sized(10, 4);
export type Version = 'TLSv1.3' | 'TLSv1.2';
export const VERSIONS: Version[] = ['TLSv1.3', 'TLSv1.2'];

/** One GET on a new TLS connection of `version`, offering `session`: who served it, whether the session resumed, and the session to offer next. */
export async function tlsGet(
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
export class Reconnector {
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
export async function httpsLoad(t: { after(fn: () => unknown): void }, port: number): Promise<HttpLoad> {
  const load = new HttpLoad(`https://127.0.0.1:${port}`, 4, '/', { connect: { ca } });
  t.after(() => load.stop());
  await load.waitForMore(20);
  return load;
}

export async function assertNoFailures(load: HttpLoad): Promise<void> {
  await load.waitForMore(20);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
}
