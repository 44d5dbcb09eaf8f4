/**
 * Overlapping upgrades under `baton start` (issue 16), while a 10 s streaming
 * response is in flight, under keep-alive load and a fresh-connection prober:
 *
 * - A reload fired every 200 ms (HUP; every fifth by `baton reload`), with 3 s
 *   downloads keeping each replaced worker draining: the master runs them back
 *   to back, each one done, or refused cleanly (`reload-refused`,
 *   ERR_BATON_TOO_MANY_GENERATIONS naming the slot's workers; `baton reload`
 *   exits 1 saying so) when a new worker would make more than
 *   `maxGenerations` of the slot alive; the master's worker processes, counted
 *   from /proc every 20 ms and at each firing, never exceed the bound; the
 *   stream and every download complete byte for byte.
 * - Binary upgrades: an old master exits only once its workers drained, and a
 *   new master refuses USR2 while its old master runs. So a second USR2 while
 *   the first old master drains the stream is refused with a message saying
 *   so (and `baton upgrade` fails with the upgrade under way), and the same
 *   USR2 is accepted once the old master exited.
 *
 * Both: 0 failed requests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { alive } from '../src/core/proc.js';
import { FreshProber } from './helpers/http-load.js';
import { EventLog, killAll } from './helpers/server-process.js';
import { isStreamPattern, streamingGet } from './helpers/stream-check.js';
import { cli, masterUnderLoad, next, statusOf, writeApp } from './helpers/supervisor.js';

const run = promisify(execFile);
const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

const STREAM_MS = 10_000;
const EVERY_MS = 200;
const MAX = 3;
/** Downloads in flight on every replaced worker keep it draining this long at most. */
const DOWNLOAD_MS = 3_000;
const CONFIG = `workers: 1\nmaxGenerations: ${MAX}\ntimeouts: { drainMs: 60000, readyMs: 15000, killGraceMs: 1000 }`;

/** The live (not zombie) child processes of `pid`, from /proc (each thread's `children` list): a master's workers. */
function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let list = '';
    try {
      list = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    for (const child of list.split(' ').filter(Boolean).map(Number)) if (alive(child)) out.add(child);
  }
  return [...out];
}

/**
 * Downloads of DOWNLOAD_MS each, `parallel` at a time, each on a connection of its own, until stopped:
 * every replaced worker drains one (so reloads meet the bound). Each must arrive byte for byte.
 */
class Downloads {
  ok = 0;
  readonly failed: string[] = [];
  #running = true;
  readonly #done: Promise<unknown>;
  constructor(port: number, parallel: number) {
    this.#done = Promise.all(
      Array.from({ length: parallel }, async () => {
        while (this.#running) {
          try {
            const get = streamingGet(port, `/stream?ms=${DOWNLOAD_MS}`);
            const length = Number((await get.headers)['x-length']);
            const body = await get.body;
            if (isStreamPattern(body, length)) this.ok++;
            else this.failed.push(`${body.length} of ${length} bytes, not byte-exact`);
          } catch (err) {
            this.failed.push((err as Error).message);
          }
        }
      }),
    );
  }
  async stop(): Promise<{ ok: number; failed: string[] }> {
    this.#running = false;
    await this.#done;
    return { ok: this.ok, failed: this.failed };
  }
}

/** A master of the supervised app (v1) with one worker, under keep-alive load and a prober, and a 10 s stream held by its worker. */
async function masterWithStream(t: { after(fn: () => unknown): void }) {
  const { dir, cfg, master, load } = await masterUnderLoad(t, log, CONFIG, 16, 100);
  const prober = new FreshProber(`http://127.0.0.1:${master.port}`);
  t.after(() => prober.stop());
  const worker = (await statusOf(dir, master.pid)).workers[0]!.pid;
  const stream = streamingGet(master.port, `/stream?ms=${STREAM_MS}`);
  const headers = await stream.headers;
  assert.equal(Number(headers['x-pid']), worker, 'the stream is served by the first worker');
  return { dir, cfg, master, load, prober, worker, stream, length: Number(headers['x-length']) };
}

describe('overlapping upgrades under baton start', () => {
  test(`a reload every ${EVERY_MS} ms (HUP, baton reload) during a ${STREAM_MS / 1000} s stream: done or refused cleanly, at most maxGenerations (${MAX}) workers alive`, async (t) => {
    const { dir, cfg, master, load, prober, worker, stream, length } = await masterWithStream(t);
    let most = 0;
    let mostDuringStream = 0;
    const count = () => {
      const n = childrenOf(master.pid).length;
      most = Math.max(most, n);
      if (!stream.done) mostDuringStream = Math.max(mostDuringStream, n);
      return n;
    };
    const sampler = setInterval(count, 20);
    t.after(() => clearInterval(sampler));
    const downloads = new Downloads(master.port, 4);
    t.after(() => downloads.stop());

    // A reload fired every 200 ms until the stream ended, each with a new version of the app: every
    // fifth by `baton reload` (it waits for the outcome of a reload covering it and prints it), the
    // others by HUP (what `baton reload` sends). The master runs them back to back: the HUPs that
    // come during a reload get one more reload.
    const since = log.events.length;
    const commands: Promise<{ code: number; text: string }>[] = [];
    const reload = () =>
      run(process.execPath, [cli, 'reload', '-c', cfg]).then(
        (ok) => ({ code: 0, text: ok.stdout }),
        (err: { code: number; stderr: string }) => ({ code: err.code, text: err.stderr }),
      );
    let fired = 0;
    while (!stream.done) {
      fired++;
      writeApp(dir, `v${fired + 1}`);
      if (fired % 5 === 0) commands.push(reload());
      else process.kill(master.pid, 'SIGHUP');
      count();
      await delay(EVERY_MS);
    }
    const streamEnded = log.events.length;
    const body = await stream.body;
    // One more, waited for: when it returns, every reload fired before it has ended.
    commands.push(reload());
    const answers = await Promise.all(commands);
    clearInterval(sampler);

    const outcomes = log.events.slice(since).filter((e) => e.pid === master.pid && /^reload-(done|refused|failed)$/.test(e.event));
    const summary = `${fired} fired; ${outcomes.map((e) => e.event.slice('reload-'.length)).join(' ')}`;
    const failures = outcomes.filter((e) => e.event === 'reload-failed').map((e) => String(e.msg));
    assert.deepEqual(failures, [], summary);
    // A refusal is the bound, said clearly and with its code; nothing else refuses.
    const BOUND =
      /reload refused: .*more than maxGenerations \(3\) generations alive — slot 0: worker pid \d+ \(serving\), worker pid \d+ \(draining\), worker pid \d+ \(draining\)/;
    for (const e of outcomes.filter((o) => o.event === 'reload-refused')) {
      assert.equal(e.code, 'ERR_BATON_TOO_MANY_GENERATIONS', String(e.msg));
      assert.match(String(e.msg), BOUND);
    }
    for (const a of answers) assert.ok((a.code === 0 && /reload done/.test(a.text)) || (a.code === 1 && BOUND.test(a.text)), a.text);
    // While the first worker streams, a reload is done and the next one starts a third generation beside
    // it and the replaced one: the bound is reached (how many more fit in 10 s depends on the machine).
    const doneDuring = log.events.slice(since, streamEnded).filter((e) => e.pid === master.pid && e.event === 'reload-done').length;
    assert.ok(doneDuring >= 1, `${doneDuring} reloads done during the stream: ${summary}`);
    assert.equal(mostDuringStream, MAX, `at most ${mostDuringStream} workers alive during the stream: ${summary}`);
    assert.ok(most <= MAX, `${most} workers alive at once (maxGenerations ${MAX}); ${summary}`);
    assert.ok(isStreamPattern(body, length), `the stream of ${body.length} bytes (of ${length}) is not byte-exact`);
    // The first worker drains out once its stream ended; a worker serves.
    await next(log, 'the first worker drained', (e) => e.event === 'app-drained' && e.pid === worker, 0);
    assert.ok(
      (await statusOf(dir, master.pid)).workers.some((w) => w.state === 'ready'),
      'a worker serves',
    );
    const downloaded = await downloads.stop();
    assert.deepEqual(downloaded.failed, [], 'every download arrived byte for byte');
    const probed = await prober.stop();
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.slice(0, 5).join('; ')}`);
    assert.equal(probed.failed, 0, `failed fresh requests: ${probed.errors.slice(0, 5).join('; ')}`);
    t.diagnostic(
      `reloads: ${summary}; ${doneDuring} done during the stream; baton reload exits ${answers.map((a) => a.code).join(' ')}; most workers alive ${most}; ${result.ok} requests, ${downloaded.ok} downloads`,
    );
    master.child.kill('SIGTERM');
  });

  test(`USR2 while the old master drains a ${STREAM_MS / 1000} s stream is refused, and accepted once it exited`, async (t) => {
    const { dir, cfg, master: first, load, prober, worker, stream, length } = await masterWithStream(t);
    // The first binary upgrade, nginx's way: USR2, WINCH, QUIT. The old master keeps its streaming worker.
    let mark = log.events.length;
    process.kill(first.pid, 'SIGUSR2');
    const second = (await next(log, 'the new master ready', (e) => e.event === 'master-ready' && e.pid !== first.pid, mark)).pid;
    t.after(() => killAll([second]));
    process.kill(first.pid, 'SIGWINCH');
    await next(log, 'old master standby', (e) => e.event === 'master-phase' && e.pid === first.pid && e.phase === 'standby', mark);
    process.kill(first.pid, 'SIGQUIT');
    await next(log, 'the new master hears the old one stop', (e) => e.event === 'old-master-stopping' && e.pid === second, mark);

    // Meanwhile, a second upgrade: refused, with the reason; nothing starts.
    mark = log.events.length;
    process.kill(second, 'SIGUSR2');
    const refused = await next(log, 'USR2 refused', (e) => e.event === 'usr2-refused' && e.pid === second, mark);
    assert.equal(refused.code, 'ERR_BATON_UPGRADE_IN_PROGRESS');
    assert.match(
      String(refused.msg),
      new RegExp(`old master \\(pid ${first.pid}\\) still runs: it is stopping and exits once its workers have drained`),
    );
    const cmd = await run(process.execPath, [cli, 'upgrade', '-c', cfg]).then(
      () => assert.fail('baton upgrade went through while the old master drains'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(cmd.code, 1);
    assert.match(cmd.stderr, new RegExp(`an upgrade is already under way: old master pid ${first.pid}, new master pid ${second}`));
    assert.ok(!stream.done && alive(first.pid) && alive(worker), 'refused while the old master and its worker drain the stream');
    assert.equal((await statusOf(dir, second)).phase, 'running', 'the new master serves on');
    assert.equal(log.events.slice(mark).filter((e) => e.event === 'master-starting').length, 0, 'no third master started');

    // The stream ends: the old worker, then the old master exit; the same USR2 is accepted.
    const body = await stream.body;
    assert.ok(isStreamPattern(body, length), `the stream of ${body.length} bytes (of ${length}) is not byte-exact`);
    await next(log, 'the old master exits', (e) => e.event === 'master-exited' && e.pid === first.pid, mark);
    await next(log, 'the new master alone', (e) => e.event === 'old-master-gone' && e.pid === second, mark);
    mark = log.events.length;
    process.kill(second, 'SIGUSR2');
    const third = (await next(log, 'the third master ready', (e) => e.event === 'master-ready' && e.pid !== second, mark)).pid;
    t.after(() => killAll([third]));
    assert.equal(log.events.slice(mark).filter((e) => e.event === 'usr2-refused').length, 0);
    await load.waitForMore(100);

    const probed = await prober.stop();
    const result = await load.stop();
    assert.equal(result.failed, 0, `failed requests: ${result.errors.slice(0, 5).join('; ')}`);
    assert.equal(probed.failed, 0, `failed fresh requests: ${probed.errors.slice(0, 5).join('; ')}`);
    process.kill(third, 'SIGTERM');
    process.kill(second, 'SIGTERM');
  });
});
