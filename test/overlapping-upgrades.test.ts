/**
 * Overlapping upgrades: a new upgrade while older generations still drain.
 *
 * - Upgrades are started every 200 ms while a 10 s streaming response holds
 *   the first generation in its drain, under keep-alive load: the response
 *   completes byte for byte, every request succeeds, each upgrade either
 *   serves or is refused with a clear code, and never more than
 *   `maxGenerations` generations are alive.
 * - The bound itself: two generations each hold a request in flight, a
 *   third serves; the next upgrade is refused (ERR_BATON_TOO_MANY_GENERATIONS,
 *   naming the draining generations) and the serving one goes on; once the
 *   oldest request is answered and its generation exits, the same upgrade
 *   succeeds.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, describe, it } from 'node:test';
import { alive } from '../src/core/proc.js';
import { FreshProber, HttpLoad } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, upgradeFixture, type FixtureEvent } from './helpers/server-process.js';

const STREAM_MS = 10_000;
const EVERY_MS = 200;

/** A GET whose body is collected whole: its status, headers and bytes. */
function get(origin: string, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    // A connection of its own (no agent): it stays with the generation that accepted it.
    const req = http.get(`${origin}${path}`, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Whether `body` is the fixture's /stream pattern (bytes i % 251) of exactly `length` bytes. */
function isStreamPattern(body: Buffer, length: number): boolean {
  if (body.length !== length) return false;
  for (let i = 0; i < length; i++) if (body[i] !== i % 251) return false;
  return true;
}

/** Generations that became ready and have not exited: counted from the test's events and /proc. */
function aliveGenerations(log: EventLog): FixtureEvent[] {
  return log.events.filter((e) => e.event === 'ready' && alive(e.pid));
}

describe('overlapping upgrades', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  for (const via of ['takeover', 'exec'] as const) {
    it(`${via}: upgrades every ${EVERY_MS} ms during a ${STREAM_MS / 1000} s streaming response, at most maxGenerations alive`, async () => {
      const MAX = 3;
      const env = { BATON_SOCKET_DIR: tempDir(), MAX_GENERATIONS: String(MAX), FIXTURE_NAME: `overlap-${via}` };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      const origin = `http://127.0.0.1:${listening.http}`;
      const load = new HttpLoad(origin, 16);
      const prober = new FreshProber(origin);
      await load.waitForGeneration((g) => g === 1);

      const stream = get(origin, `/stream?ms=${STREAM_MS}`);
      let streamDone = false;
      void stream.finally(() => (streamDone = true));

      // One upgrade at a time, the next 200 ms after the previous one served or was refused (a
      // deploy loop); meanwhile the stream keeps generation 1 draining. At each ready: how many
      // generations are alive.
      let most = 0;
      let serving = first.pid!;
      let attempts = 0;
      let overlapping = 0; // upgrades that served while generation 1 still drained
      const outcomes: FixtureEvent[] = [];
      while (!streamDone) {
        attempts++;
        const mark = log.events.length;
        const child = via === 'takeover' ? spawnFixture(fixture('server'), env, log) : undefined;
        if (!child) process.kill(serving, 'SIGUSR2');
        const outcome = await log.waitFor(
          (e) =>
            child
              ? e.pid === child.pid && (e.event === 'ready' || e.event === 'start-failed')
              : (e.event === 'ready' && e.origin === 'exec') || (e.event === 'upgrade-failed' && e.pid === serving),
          `the outcome of upgrade ${attempts}`,
          60_000,
          mark,
        );
        outcomes.push(outcome);
        if (outcome.event === 'ready') {
          serving = outcome.pid;
          most = Math.max(most, aliveGenerations(log).length);
          if (!streamDone) overlapping++;
        }
        await new Promise((resolve) => setTimeout(resolve, EVERY_MS));
      }
      const response = await stream;
      assert.ok(streamDone);
      const ready = outcomes.filter((e) => e.event === 'ready');
      const refused = outcomes.filter((e) => e.event !== 'ready');
      const newest = Math.max(...ready.map((e) => Number(e.generation)));
      await load.waitForGeneration((g) => g === newest);
      const probed = await prober.stop();
      const result = await load.stop();

      assert.equal(response.status, 200);
      assert.equal(response.headers['x-generation'], '1', 'the stream was served by the first generation');
      assert.ok(
        isStreamPattern(response.body, Number(response.headers['x-length'])),
        `stream of ${response.body.length} bytes not byte-exact`,
      );
      // Generation 2 serves beside draining 1, then 3 is the upgrade of a generation whose
      // predecessor still drains: the overlap. (How many more fit in 10 s depends on the machine.)
      assert.ok(overlapping >= 2, `only ${overlapping} of ${attempts} upgrades served while the first generation drained`);
      // An exec successor writes on its predecessor's stderr: the last lines say why one failed.
      const stderr = () =>
        log.output
          .filter((l) => l.startsWith('[stderr'))
          .slice(-20)
          .join('\n');
      for (const r of refused) {
        assert.match(String(r.code), /^ERR_BATON_(TOO_MANY_GENERATIONS|UPGRADE_IN_PROGRESS)$/, `${String(r.message)}\n${stderr()}`);
      }
      assert.ok(most <= MAX, `${most} generations were alive at once (maxGenerations ${MAX})`);
      assert.equal(result.failed, 0, `failed requests: ${result.errors.slice(0, 5).join('; ')}`);
      assert.equal(probed.failed, 0, `failed fresh requests: ${probed.errors.slice(0, 5).join('; ')}`);
      killAll(
        aliveGenerations(log).map((e) => e.pid),
        'SIGTERM',
      );
    });
  }

  for (const via of ['takeover', 'exec'] as const) {
    it(`${via}: an upgrade above maxGenerations is refused, naming the draining generations, and succeeds once one exited`, async () => {
      const env = { BATON_SOCKET_DIR: tempDir(), MAX_GENERATIONS: '3', FIXTURE_NAME: `bound-${via}` };
      const first = spawnFixture(fixture('server'), env, log);
      const listening = await log.waitEvent('listening', first.pid);
      await log.waitEvent('ready', first.pid);
      const origin = `http://127.0.0.1:${listening.http}`;
      const load = new HttpLoad(origin, 8);

      // Generations 1 and 2 each hold a request in flight (answered on SIGWINCH) and drain.
      const held1 = get(origin, '/hold');
      await log.waitEvent('holding-request', first.pid);
      let since = log.events.length;
      const second = await upgradeFixture(log, env, via, first.pid!, 2, since);
      const held2 = get(origin, '/hold');
      await log.waitEvent('holding-request', second.pid);
      since = log.events.length;
      const third = await upgradeFixture(log, env, via, second.pid, 3, since);
      await load.waitForGeneration((g) => g === 3);

      // The fourth would make four alive.
      since = log.events.length;
      if (via === 'takeover') spawnFixture(fixture('server'), env, log);
      else process.kill(third.pid, 'SIGUSR2');
      const refusal = await log.waitFor(
        (e) => (e.event === 'start-failed' || e.event === 'upgrade-failed') && e.code === 'ERR_BATON_TOO_MANY_GENERATIONS',
        'the refusal',
        30_000,
        since,
      );
      assert.match(String(refusal.message), /generation 2 \(pid \d+\), generation 1 \(pid \d+\) still drain/);
      assert.match(String(refusal.message), /maxGenerations is 3/);
      assert.ok(alive(first.pid!) && alive(second.pid) && alive(third.pid), 'a generation exited at the refusal');
      assert.equal(log.events.slice(since).filter((e) => e.event === 'ready').length, 0, 'a fourth generation became ready');
      await load.waitForMore(50); // the serving generation goes on

      // The oldest request is answered: generation 1 exits, and the same upgrade goes through.
      process.kill(first.pid!, 'SIGWINCH');
      const answer1 = await held1;
      // Gone from the process table (its 'exit' line comes just before the end).
      if (first.exitCode === null && first.signalCode === null) await once(first, 'exit');
      since = log.events.length;
      const fourth = await upgradeFixture(log, env, via, third.pid, 4, since);
      await load.waitForGeneration((g) => g === 4);
      process.kill(second.pid, 'SIGWINCH');
      const answer2 = await held2;
      const result = await load.stop();

      assert.equal(answer1.body.toString(), 'held 1\n');
      assert.equal(answer2.body.toString(), 'held 2\n');
      assert.equal(result.failed, 0, `failed requests: ${result.errors.slice(0, 5).join('; ')}`);
      killAll([fourth.pid, second.pid, third.pid], 'SIGTERM');
    });
  }
});
