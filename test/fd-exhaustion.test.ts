/**
 * A server out of fds (RLIMIT_NOFILE lowered with prlimit to a few dozen above
 * what it uses), exhausted by ordinary TCP clients, or by idle peers on its
 * upgrade socket. Accepting on the upgrade socket then fails with EMFILE: the
 * generation reports it once (a 'warning', ERR_BATON_ACCEPT_FAILED), backs off
 * and tries again, and never crashes. Once the clients let go, it serves fresh
 * connections again, accepts on its upgrade socket, and a takeover works.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { freshRequests } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture } from './helpers/server-process.js';

/** Fds the server may open beyond those it holds when ready. */
const HEADROOM = 24;
/** Clients opened to use the headroom up: more than it, so some find no fd at all. */
const CLIENTS = HEADROOM + 16;

/** Opens a connection and resolves once connected (the kernel completes it even if the server cannot accept). */
function connect(options: net.NetConnectOpts): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(options, () => resolve(socket));
    socket.on('error', reject);
  });
}

/**
 * Sends a request on `socket` and resolves once the server answered it or
 * dropped the connection (no fd left for it): either way the server has
 * accepted it, so it uses an fd for as long as it is open (keep-alive).
 */
function served(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('data', done).off('close', done);
      resolve();
    };
    socket.on('data', done).on('close', done);
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
  });
}

/** Resolves once process `pid` has fewer than `n` fds open (polled every 20 ms, for up to 30 s). */
async function fdsBelow(pid: number, n: number): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    const open = fs.readdirSync(`/proc/${pid}/fd`).length;
    if (open < n) return;
    if (performance.now() > deadline) throw new Error(`pid ${pid} still has ${open} fds open (waiting for fewer than ${n})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('out of fds', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  for (const by of ['TCP clients', 'idle upgrade-socket peers'] as const) {
    it(`exhausted by ${by}: the accept error is reported once, it serves on, a takeover works afterwards`, async () => {
      const dir = tempDir();
      // Kept-alive connections keep their fds while the test runs.
      const env = { BATON_SOCKET_DIR: dir, KEEP_ALIVE_TIMEOUT_MS: '300000' };
      const socketPath = path.join(dir, 'fixture.sock');
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      const ready = await log.waitEvent('ready', first.pid);
      const limit = Number(ready.fds) + HEADROOM;
      execFileSync('prlimit', ['--pid', String(first.pid), `--nofile=${limit}:${limit}`]);
      const origin = `http://127.0.0.1:${listening.http}`;

      const since = log.events.length;
      const held: net.Socket[] = [];
      try {
        for (let i = 0; i < CLIENTS; i++) {
          const socket = await connect(by === 'TCP clients' ? { host: '127.0.0.1', port: listening.http as number } : { path: socketPath });
          // The server may have no fd for it and drop it: that is what running out looks like.
          socket.on('error', () => undefined);
          held.push(socket);
          if (by === 'TCP clients') await served(socket);
        }
        // Knocking on the upgrade socket while no fd is left.
        for (let i = 0; i < 4; i++) {
          const socket = await connect({ path: socketPath });
          socket.on('error', () => undefined);
          held.push(socket);
        }
        const warning = await log.waitFor(
          (e) => e.event === 'warning' && e.pid === first.pid && e.code === 'ERR_BATON_ACCEPT_FAILED',
          'the accept error reported',
          30_000,
          since,
        );
        assert.match(String(warning.message), new RegExp(`upgrade socket ${socketPath}: .*EMFILE.*accepting goes on \\(after a back-off`));
        // The back-off retries meanwhile, failing every time: still the one report.
        await new Promise((r) => setTimeout(r, 500));
        const reports = log.events.slice(since).filter((e) => e.event === 'warning' && e.pid === first.pid);
        assert.equal(reports.length, 1, reports.map((e) => String(e.message)).join('\n'));
      } finally {
        for (const s of held) s.destroy();
      }

      // Fds free again (once it has read the clients' close: no event says so, its fd table does)
      // it serves, and its upgrade socket leads to a working takeover.
      await fdsBelow(first.pid!, limit - HEADROOM / 2);
      assert.deepEqual(new Set(await freshRequests(origin, 5)), new Set([1]));
      const next = await upgradeFixture(log, env, 'takeover', first.pid!, 2, log.events.length);
      await log.waitEvent('exit', first.pid);
      assert.deepEqual(new Set(await freshRequests(origin, 3)), new Set([2]));
      process.kill(next.pid, 'SIGTERM');
      await log.waitEvent('exit', next.pid);
    });
  }
});
