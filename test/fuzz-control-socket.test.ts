/**
 * The supervisor's control socket under hostile clients, against a real
 * master (`baton start`) over real connections:
 * - a slowloris (connects, sends part of a line, never finishes) gets an
 *   error line and is closed at ControlLimits.requestTimeoutMs;
 * - 1000 held connections: at most ControlLimits.maxConnections are kept, the
 *   rest closed at once, and the master's fd count returns to what it was;
 * - FUZZ_REQUESTS (default 10,000) seeded request lines — valid JSON of the
 *   wrong shape, garbage, huge lines, unterminated lines — each answered; the master stays alive, serves, answers status, fds flat.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { ControlLimits } from '../src/core/options.js';
import { controlSocketPath } from '../src/supervisor/control.js';
import { Rng, fuzzControlLine, fuzzSeed } from './helpers/fuzz-frames.js';
import { assertFdsFlat, fdCount } from './helpers/hostile-peer.js';
import { getOnce } from './helpers/http-load.js';
import { EventLog, killAll, pidsOf, tempDir } from './helpers/server-process.js';
import { quit, startMaster, statusOf, writeApp, writeConfig } from './helpers/supervisor.js';

const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
const SEED = fuzzSeed();

/** Sends `bytes` (and ends our side unless `hold`), resolves with what the master answered once it closed. */
async function request(file: string, bytes: Buffer, hold = false): Promise<string> {
  const socket = net.connect(file);
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (answer += d));
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  socket.write(bytes);
  if (!hold) socket.end();
  await once(socket, 'close');
  return answer;
}

async function master(t: { after(fn: () => unknown): void }) {
  const dir = tempDir();
  writeApp(dir, 'control fuzz');
  const cfg = writeConfig(dir, '');
  const log = new EventLog();
  t.after(() => killAll(pidsOf(log)));
  const m = await startMaster(log, cfg);
  t.after(() => quit(m));
  return { dir, m, file: controlSocketPath(dir, 'app', m.pid), origin: `http://127.0.0.1:${m.port}` };
}

describe(`control socket under hostile clients (seed ${SEED}, FUZZ_SEED to replay)`, () => {
  it('cuts off a slowloris at the request timeout and keeps at most maxConnections of 1000 held connections', async (t) => {
    const { dir, m, file } = await master(t);
    const before = fdCount(m.pid);
    const started = performance.now();
    const slow = await request(file, Buffer.from('{"cmd":"sta'), true);
    const took = performance.now() - started;
    assert.match(slow, /"ok":false,"error":"no complete request within 5000 ms"/);
    assert.ok(took >= ControlLimits.requestTimeoutMs - 100 && took < ControlLimits.requestTimeoutMs * 3, `closed after ${took} ms`);

    const held: net.Socket[] = [];
    const closedEarly: Promise<unknown>[] = [];
    for (let i = 0; i < 1000; i++) {
      const s = net.connect(file);
      s.on('error', () => undefined);
      s.resume(); // read what comes, so the master's close is seen
      held.push(s);
      closedEarly.push(new Promise((resolve) => s.on('close', resolve)));
    }
    await Promise.all(held.map((s) => new Promise((resolve) => (s.on('connect', resolve), s.on('close', resolve)))));
    // Ask the master while they are held: above the bound, connections are closed at once.
    await statusOf(dir, m.pid).catch(() => undefined);
    const during = fdCount(m.pid);
    t.diagnostic(`master fds: ${before} before, ${during} with 1000 connections held`);
    assert.ok(during <= before + ControlLimits.maxConnections + 2, `the master holds ${during - before} more fds`);
    // Every held connection ends within the timeout (twice: one to complete, one to read the answer).
    t.diagnostic(`${held.filter((s) => s.destroyed).length} of 1000 closed at once`);
    await Promise.all(closedEarly);
    await assertFdsFlat(m.pid, before, 'fds back to before');
    assert.equal((await statusOf(dir, m.pid)).pid, m.pid);
  });

  it(`answers or closes ${REQUESTS} fuzzed request lines; the master serves on with flat fds`, async (t) => {
    t.diagnostic(`seed ${SEED}`);
    const { dir, m, file, origin } = await master(t);
    const before = fdCount(m.pid);
    const rng = new Rng(SEED);
    let next = 0;
    const counts = new Map<string, number>();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < REQUESTS) {
          next++;
          const { line, what } = fuzzControlLine(rng);
          const answer = await request(file, line);
          counts.set(what, (counts.get(what) ?? 0) + 1);
          if (what === 'valid status request') assert.match(answer, /^\{"ok":true,"status":/, `seed ${SEED}`);
          else if (what !== 'mutated request' && what !== 'wild JSON')
            assert.match(answer, /^\{"ok":false,"error":"/, `${what}, seed ${SEED}`);
          else assert.match(answer, /^\{"ok":(true|false)/, `${what}, seed ${SEED}`);
        }
      }),
    );
    t.diagnostic(`${REQUESTS} requests in ${(performance.now() - started).toFixed(0)} ms: ${JSON.stringify([...counts])}`);
    assert.equal(m.child.exitCode, null, 'the master is alive');
    assert.equal((await getOnce(origin)).status, 200);
    assert.equal((await statusOf(dir, m.pid)).pid, m.pid);
    await assertFdsFlat(m.pid, before, `fds flat (seed ${SEED})`);
    const wrongShape = await request(file, Buffer.from('{"cmd":"constructor"}\n'));
    assert.match(wrongShape, /bad request: cmd: /);
  });
});
