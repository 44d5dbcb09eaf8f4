/**
 * App state crosses every handover exactly: the fixture hands `{ served, blob }`
 * (requests served so far, plus a 200 KB blob, larger than one read), and after
 * N requests and a takeover, then M more and an exec upgrade, the successors
 * inherit served = N and then N + M, not one more or less. A state over
 * maxStateBytes fails the handover on both paths with ERR_BATON_STATE_INVALID:
 * the predecessor reports it and serves on under load without a failed request,
 * the successor's start() rejects with the predecessor's reason.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Client } from 'undici';
import { loadOn } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, waitGone } from './helpers/server-process.js';

const CONNECTIONS = 64;

/** `n` requests over one keep-alive connection, closed afterwards; returns the generations that answered. */
async function requests(origin: string, n: number): Promise<Set<number>> {
  const client = new Client(origin);
  const generations = new Set<number>();
  try {
    for (let i = 0; i < n; i++) {
      const res = await client.request({ path: '/', method: 'GET' });
      await res.body.text();
      assert.equal(res.statusCode, 200);
      generations.add(Number(res.headers['x-generation']));
    }
  } finally {
    await client.close();
  }
  return generations;
}

describe('app state handover', () => {
  it('successors inherit exactly the requests served so far, by takeover and then by exec', async (t) => {
    const log = new EventLog();
    t.after(() => killAll(pidsOf(log)));
    const BLOB = 200_000;
    const env = { BATON_SOCKET_DIR: path.join(tempDir(), 'sockets'), STATE_BYTES: String(BLOB) };
    const N = 25;
    const M = 17;

    const first = spawnFixture(fixture('server'), env, log);
    const started1 = await log.waitEvent('started', first.pid);
    assert.equal(started1.inheritedState, null, 'a fresh server inherits nothing');
    const listening = await log.waitEvent('listening', first.pid);
    await log.waitEvent('ready', first.pid);
    const origin = `http://127.0.0.1:${listening.http}`;
    assert.deepEqual(await requests(origin, N), new Set([1]));

    // Takeover: generation 2 inherits N.
    const second = spawnFixture(fixture('server'), env, log);
    const started2 = await log.waitEvent('started', second.pid);
    assert.equal(started2.origin, 'takeover');
    const state2 = started2.inheritedState as { served: number; blob: { length: number; intact: boolean } };
    assert.equal(state2.served, N);
    assert.equal(state2.blob.length, BLOB);
    assert.ok(state2.blob.intact, 'the blob arrived intact');
    await log.waitEvent('ready', second.pid);
    await log.waitEvent('exit', first.pid);

    // M more, all served by generation 2 (generation 1 is gone), then exec: generation 3 inherits N + M.
    assert.deepEqual(await requests(origin, M), new Set([2]));
    const since = log.events.length;
    process.kill(second.pid!, 'SIGUSR2');
    const started3 = await log.waitFor((e) => e.event === 'started' && e.generation === 3, 'generation 3 started', 30_000, since);
    assert.equal(started3.origin, 'exec');
    const state3 = started3.inheritedState as { served: number; blob: { length: number; intact: boolean } };
    assert.equal(state3.served, N + M);
    assert.equal(state3.blob.length, BLOB);
    assert.ok(state3.blob.intact, 'the blob arrived intact');
    await log.waitEvent('ready', started3.pid);
    await log.waitEvent('exit', second.pid);
    assert.deepEqual(await requests(origin, 1), new Set([3]));
    process.kill(started3.pid, 'SIGTERM');
    await log.waitEvent('exit', started3.pid);
  });

  for (const via of ['takeover', 'exec'] as const) {
    it(`a state over maxStateBytes fails the ${via} handover with ERR_BATON_STATE_INVALID; the predecessor serves on`, async (t: TestContext) => {
      const log = new EventLog();
      t.after(() => killAll(pidsOf(log)));
      const env = { BATON_SOCKET_DIR: path.join(tempDir(), 'sockets'), MAX_STATE_BYTES: '4096', STATE_BYTES: '10000' };
      const first = spawnFixture(fixture('server'), env, log);
      const pid = first.pid!;
      const listening = await log.waitEvent('listening', pid);
      await log.waitEvent('ready', pid);
      const origin = `http://127.0.0.1:${listening.http}`;
      const load = await loadOn(t, origin, CONNECTIONS);
      const stopLoad = () => load.stop();

      const since = log.events.length;
      const successor = via === 'takeover' ? spawnFixture(fixture('server'), env, log) : undefined;
      if (via === 'exec') process.kill(pid, 'SIGUSR2');
      const failed = await log.waitFor((e) => e.event === 'upgrade-failed' && e.pid === pid, 'upgrade-failed', 30_000, since);
      assert.equal(failed.code, 'ERR_BATON_STATE_INVALID');
      assert.match(String(failed.message), /the app state is \d+ bytes; the limit \(maxStateBytes\) is 4096/);
      assert.deepEqual(
        log.events
          .slice(since)
          .filter((e) => e.event === 'phase' && e.pid === pid)
          .map((e) => (e.args as string[])[0]),
        ['handing-over', 'serving'],
      );
      const successorPid = (
        log.events.slice(since).find((e) => e.event === 'upgrade-start' && e.pid === pid)?.args as { pid: number }[]
      )[0]!.pid;

      if (successor) {
        // Ours: its start() rejects with the predecessor's reason.
        const [code] = successor.exitCode !== null ? [successor.exitCode] : ((await once(successor, 'exit')) as [number]);
        assert.equal(code, 2);
        const startFailed = log.events.find((e) => e.event === 'start-failed' && e.pid === successor.pid);
        assert.equal(startFailed?.code, 'ERR_BATON_STATE_INVALID');
        assert.match(String(startFailed?.message), /maxStateBytes/);
        assert.equal(successorPid, successor.pid);
      } else {
        // The predecessor's child: aborted and reaped. It may be killed (SIGTERM) before
        // it could report; if it did report, it reported the right reason.
        await waitGone(successorPid, 10_000);
        const startFailed = log.events.find((e) => e.event === 'start-failed' && e.pid === successorPid);
        if (startFailed) assert.equal(startFailed.code, 'ERR_BATON_STATE_INVALID');
        assert.equal(
          log.events.some((e) => e.event === 'ready' && e.pid === successorPid),
          false,
        );
      }

      // The predecessor serves on: new connections, the load, and a clean stop.
      assert.deepEqual(await requests(origin, 3), new Set([1]));
      const result = await stopLoad();
      assert.equal(result.failed, 0, result.errors.join('; '));
      assert.ok(result.ok > CONNECTIONS);
      assert.deepEqual([...result.generations.keys()], [1]);
      process.kill(pid, 'SIGTERM');
      await log.waitEvent('exit', pid);
      assert.deepEqual(
        log.events.filter((e) => e.event === 'phase' && e.pid === pid).map((e) => (e.args as string[])[0]),
        ['serving', 'handing-over', 'serving', 'draining', 'exited'],
      );
    });
  }
});
