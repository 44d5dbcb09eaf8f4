/**
 * Data consistency mode (`baton run --consistent`): an unmodified app that
 * keeps its data in memory and in a file (loads it at start, writes and
 * fsyncs it on each POST, then acknowledges the new id) loses no
 * acknowledged write across 10 upgrades under a steady POST stream, and
 * reuses no id: the successor's app loads the file only once the predecessor
 * stopped taking requests and finished those in flight. The same run
 * without the mode shows the loss — the test can fail. The pause (the
 * longest a request waited) is printed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Pool } from 'undici';
import { AppRunner, appFile } from './helpers/adopt.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { next, quit, startMaster, writeAppConfig } from './helpers/supervisor.js';

const UPGRADES = 10;
const log = new EventLog();
const apps = new AppRunner(log);
after(() => {
  killAll(log.events.map((e) => e.pid));
  apps.killAll();
});

/** A steady stream of POSTs from `workers` keep-alive clients; every acknowledgement is kept. */
class PostStream {
  readonly acked: { id: number; body: string }[] = [];
  readonly errors: string[] = [];
  failed = 0;
  maxLatencyMs = 0;
  readonly #pool: Pool;
  #running = true;
  readonly #workers: Promise<void>[];
  #waiters: { count: number; resolve: () => void }[] = [];

  constructor(origin: string, workers: number) {
    this.#pool = new Pool(origin, { connections: workers, pipelining: 1 });
    this.#workers = Array.from({ length: workers }, (_, w) => this.#worker(w));
  }

  async #worker(w: number): Promise<void> {
    for (let k = 0; this.#running; k++) {
      const body = `w${w}-${k}`;
      const started = performance.now();
      try {
        const res = await this.#pool.request({ path: '/', method: 'POST', body });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${text}`);
        this.acked.push({ id: (JSON.parse(text) as { id: number }).id, body });
        this.maxLatencyMs = Math.max(this.maxLatencyMs, performance.now() - started);
        this.#waiters = this.#waiters.filter((x) => (this.acked.length >= x.count ? (x.resolve(), false) : true));
      } catch (err) {
        this.failed++;
        if (this.errors.length < 10) this.errors.push((err as Error).message);
      }
    }
  }

  /** Resolves once `n` more writes were acknowledged. */
  more(n: number): Promise<void> {
    const count = this.acked.length + n;
    return new Promise((resolve) => (this.acked.length >= count ? resolve() : this.#waiters.push({ count, resolve })));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#workers);
    await this.#pool.close();
  }
}

/** Runs the app, 10 upgrades under the POST stream; returns what was acknowledged and what the file holds. */
async function scenario(flags: string[]) {
  const dir = tempDir('baton-consistency-');
  const env = { DATA_FILE: path.join(dir, 'data.json') };
  let pid = (await apps.run(dir, 'file-store.mjs', env, flags).ready()).pid;
  const stream = new PostStream(`http://127.0.0.1:${apps.portOf(pid)}`, 8);
  await stream.more(100);
  const lostPerUpgrade: number[] = [];
  const lost = () => {
    const stored = new Set(
      (JSON.parse(fs.readFileSync(env.DATA_FILE, 'utf8')) as { records: { body: string }[] }).records.map((r) => r.body),
    );
    return stream.acked.filter((a) => !stored.has(a.body)).length;
  };
  for (let i = 0; i < UPGRADES; i++) {
    pid = await apps.upgrade(dir, 'file-store.mjs', pid, env, flags);
    // A write the new generation acknowledged rewrote the file: what it lacks is lost for good.
    await stream.more(50);
    lostPerUpgrade.push(lost() - lostPerUpgrade.reduce((a, b) => a + b, 0));
  }
  await stream.stop();
  const records = (JSON.parse(fs.readFileSync(env.DATA_FILE, 'utf8')) as { records: { id: number; body: string }[] }).records;
  const stored = new Map(records.map((r) => [r.body, r.id]));
  const missing = stream.acked.filter((a) => stored.get(a.body) !== a.id);
  const ids = stream.acked.map((a) => a.id);
  const reused = ids.length - new Set(ids).size;
  process.kill(pid, 'SIGTERM');
  await log.waitFor((e) => e.event === 'drained' && e.pid === pid, 'the last generation stopped', 30_000);
  return { stream, missing, reused, lostPerUpgrade };
}

describe('data consistency mode', () => {
  test(`--consistent: ${UPGRADES} upgrades under a steady POST stream, every acknowledged write kept, no id reused, 0 failed`, async (t) => {
    const { stream, missing, reused } = await scenario(['--consistent']);
    assert.equal(stream.failed, 0, `failed requests: ${stream.errors.join('; ')}`);
    assert.deepEqual(missing, [], 'acknowledged writes missing from the file');
    assert.equal(reused, 0, 'ids acknowledged twice');
    assert.ok(stream.acked.length > 100 + UPGRADES * 50);
    const line = `consistency pause: the longest a POST waited across ${UPGRADES} upgrades was ${stream.maxLatencyMs.toFixed(0)} ms (${stream.acked.length} writes)`;
    t.diagnostic(line);
  });

  test('--consistent: a successor that fails after the quiesce (its app throws at load) leaves the predecessor serving, nothing lost', async () => {
    const dir = tempDir('baton-consistency-');
    const env = { DATA_FILE: path.join(dir, 'data.json') };
    const pid = (await apps.run(dir, 'file-store.mjs', env, ['--consistent']).ready()).pid;
    const stream = new PostStream(`http://127.0.0.1:${apps.portOf(pid)}`, 8);
    await stream.more(100);
    for (let i = 0; i < 3; i++) {
      const since = log.events.length;
      const broken = apps.run(dir, 'broken.mjs', { BROKEN: 'throws' }, ['--consistent']);
      await log.waitFor((e) => e.event === 'quiesced' && e.predecessorPid === pid, 'the predecessor quiesced', 30_000, since);
      await log.waitFor((e) => e.event === 'upgrade-failed' && e.pid === pid, 'the upgrade failed', 30_000, since);
      assert.notEqual(broken.child.exitCode ?? (await new Promise((r) => broken.child.once('exit', r))), 0);
      await stream.more(50);
    }
    await stream.stop();
    assert.equal(stream.failed, 0, `failed requests: ${stream.errors.join('; ')}`);
    const stored = new Set(
      (JSON.parse(fs.readFileSync(env.DATA_FILE, 'utf8')) as { records: { body: string }[] }).records.map((r) => r.body),
    );
    assert.deepEqual(
      stream.acked.filter((a) => !stored.has(a.body)),
      [],
      'every acknowledged write is in the file',
    );
    process.kill(pid, 'SIGTERM');
    await log.waitFor((e) => e.event === 'drained' && e.pid === pid, 'stopped', 30_000);
  });

  test('baton start with consistency: true in the config: 5 HUP reloads under the POST stream, every acknowledged write kept', async () => {
    const dir = tempDir('baton-consistency-');
    const dataFile = path.join(dir, 'data.json');
    const { port, cfg } = await writeAppConfig(dir, appFile('file-store.mjs'), {
      workers: 1,
      env: { DATA_FILE: dataFile },
      extra: 'consistency: true',
    });
    const master = await startMaster(log, cfg);
    const stream = new PostStream(`http://127.0.0.1:${port}`, 8);
    await stream.more(100);
    for (let i = 0; i < 5; i++) {
      const mark = log.events.length;
      master.child.kill('SIGHUP');
      await next(log, 'reload done', (e) => e.event === 'reload-done' && e.pid === master.pid, mark);
      await stream.more(50);
    }
    await stream.stop();
    assert.equal(stream.failed, 0, `failed requests: ${stream.errors.join('; ')}`);
    const stored = new Map(
      (JSON.parse(fs.readFileSync(dataFile, 'utf8')) as { records: { id: number; body: string }[] }).records.map((r) => [r.body, r.id]),
    );
    assert.deepEqual(
      stream.acked.filter((a) => stored.get(a.body) !== a.id),
      [],
      'every acknowledged write is in the file',
    );
    await quit(master);
  });

  test('without the mode the same run loses acknowledged writes (the contrast that proves the test can fail)', async (t) => {
    const { stream, missing, reused, lostPerUpgrade } = await scenario([]);
    t.diagnostic(
      `without the mode: ${missing.length} acknowledged writes lost, ${reused} ids reused; per upgrade ${lostPerUpgrade.join(' ')}`,
    );
    assert.equal(stream.failed, 0, `failed requests: ${stream.errors.join('; ')}`);
    assert.ok(
      missing.length > 0 && lostPerUpgrade.some((n) => n > 0),
      'writes acknowledged by the old generation after the new one loaded the file are lost',
    );
  });
});
