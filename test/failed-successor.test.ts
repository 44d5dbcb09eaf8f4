/**
 * A successor that fails never costs a request: under continuous 64-connection
 * keep-alive load (undici), a successor that crashes (SIGKILL), exits non-zero,
 * throws, hangs past the ready timeout, freezes (deaf to SIGTERM) or does not
 * even parse is refused by the predecessor, by both upgrade paths. For each, the
 * predecessor reports 'upgrade-failed' with the right code and message, goes
 * back to 'serving' (phase events handing-over → serving), kills and reaps an
 * exec child it gave up on (SIGTERM, then SIGKILL after killGraceMs), accepts
 * new connections, and a normal upgrade right afterwards succeeds.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it, type TestContext } from 'node:test';
import { freshRequests, loadOn } from './helpers/http-load.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir, waitGone, type FixtureEvent } from './helpers/server-process.js';

const CONNECTIONS = 64;
/**
 * Predecessor's ready timeout in the hang and freeze cases. On the exec path it
 * also bounds the child's Node start-up to its hello: 2 s was too short on a
 * loaded 2-core machine (the child sent no hello in time, a different error).
 */
const SHORT_READY_TIMEOUT_MS = 5000;
const KILL_GRACE_MS = 1000;

type Mode = 'crash' | 'exit' | 'throw' | 'hang' | 'freeze' | 'syntax';
const MODES: readonly Mode[] = ['crash', 'exit', 'throw', 'hang', 'freeze', 'syntax'];

/** What the predecessor must report for each mode, by path. */
function expectedFailure(via: 'takeover' | 'exec', mode: Mode): { code: string; message: RegExp } {
  if (mode === 'hang' || mode === 'freeze') {
    return { code: 'ERR_BATON_READY_TIMEOUT', message: new RegExp(`did not become ready within ${SHORT_READY_TIMEOUT_MS} ms`) };
  }
  if (via === 'takeover') {
    // Not its child: the predecessor only sees the channel close.
    return { code: 'ERR_BATON_SUCCESSOR_EXITED', message: /closed the upgrade channel before it was ready/ };
  }
  const how = { crash: /was killed by SIGKILL/, exit: /exited with code 3/, throw: /exited with code 1/, syntax: /exited with code 1/ }[
    mode
  ];
  return { code: 'ERR_BATON_SUCCESSOR_EXITED', message: how };
}

/** A copy of the compiled fixture in `dir`, its imports made absolute so it runs from there. */
function fixtureCopy(dir: string): { script: string; good: string } {
  const original = fixture('server');
  const srcUrl = pathToFileURL(path.join(path.dirname(original), '..', '..', 'src')).href;
  const source = fs.readFileSync(original, 'utf8');
  // Packages resolve from node_modules next to the original; from the copy, name them by URL.
  const wsUrl = pathToFileURL(
    createRequire(original)
      .resolve('ws')
      .replace(/index\.js$/, 'wrapper.mjs'),
  ).href;
  // Every import of baton's own modules (src/index.js, src/observe/…), not only the first.
  const good = source.replaceAll("from '../../src/", `from '${srcUrl}/`).replace(/from 'ws'/, `from '${wsUrl}'`);
  assert.notEqual(good, source, 'the fixture import was rewritten');
  const script = path.join(dir, 'server-copy.js');
  fs.writeFileSync(script, good);
  return { script, good };
}

const BROKEN_JS = "import { start } from 'baton';\nconst = ;  // new code on disk that does not parse\n";

const exitOf = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve([child.exitCode, child.signalCode] as const)
    : (once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>);

async function failedSuccessorCase(t: TestContext, via: 'takeover' | 'exec', mode: Mode): Promise<void> {
  const log = new EventLog();
  t.after(() => killAll(pidsOf(log)));
  const dir = tempDir();
  const modeFile = path.join(dir, 'mode');
  fs.writeFileSync(modeFile, 'normal');
  // The exec path re-runs the predecessor's own script: for 'syntax' that script is a
  // copy we can break; everywhere else the compiled fixture itself.
  const copy = mode === 'syntax' ? fixtureCopy(dir) : undefined;
  const script = via === 'exec' && copy ? copy.script : fixture('server');
  const slow = mode === 'hang' || mode === 'freeze';
  const env: NodeJS.ProcessEnv = {
    BATON_SOCKET_DIR: path.join(dir, 'sockets'),
    KILL_GRACE_MS: String(KILL_GRACE_MS),
    ...(slow ? { READY_TIMEOUT_MS: String(SHORT_READY_TIMEOUT_MS) } : {}),
    ...(via === 'exec' ? { FIXTURE_MODE_FILE: modeFile } : {}),
  };

  const first = spawnFixture(script, env, log);
  const pid1 = first.pid!;
  const listening = await log.waitEvent('listening', pid1);
  assert.equal((await log.waitEvent('ready', pid1)).generation, 1);
  const origin = `http://127.0.0.1:${listening.http}`;
  const load = await loadOn(t, origin, CONNECTIONS);
  const stopLoad = () => load.stop();

  // --- the failing upgrade ---
  const since = log.events.length;
  const fromPredecessor = () => log.events.slice(since).filter((e) => e.pid === pid1);
  let successor: ChildProcess | undefined;
  if (via === 'takeover') {
    if (mode === 'syntax') {
      const broken = path.join(dir, 'broken.js');
      fs.writeFileSync(broken, BROKEN_JS);
      successor = spawnFixture(broken, env, log);
    } else {
      successor = spawnFixture(fixture('server'), { ...env, FIXTURE_MODE: mode }, log);
    }
  } else {
    if (copy) fs.writeFileSync(copy.script, BROKEN_JS);
    else fs.writeFileSync(modeFile, mode);
    process.kill(pid1, 'SIGUSR2');
  }

  let failedAt: number | undefined;
  let childPid: number | undefined;
  if (via === 'takeover' && mode === 'syntax') {
    // It dies parsing, before it could reach the predecessor: nothing to refuse.
    const [code] = await exitOf(successor!);
    assert.equal(code, 1);
    assert.ok(
      log.output.some((l) => l.startsWith(`[stderr ${successor!.pid}]`) && l.includes('SyntaxError')),
      'the successor reported a SyntaxError',
    );
    assert.deepEqual(fromPredecessor(), [], 'the predecessor saw nothing at all');
  } else {
    const failed = await log.waitFor((e) => e.event === 'upgrade-failed' && e.pid === pid1, 'upgrade-failed', 30_000, since);
    failedAt = performance.now();
    t.diagnostic(`predecessor: ${String(failed.code)}: ${String(failed.message)}`);
    const expected = expectedFailure(via, mode);
    assert.equal(failed.code, expected.code, String(failed.message));
    assert.match(String(failed.message), expected.message);
    childPid = Number(/successor pid (\d+)/.exec(String(failed.message))?.[1]);
    assert.ok(childPid > 0, `the message names the successor pid: ${String(failed.message)}`);
    if (successor) assert.equal(childPid, successor.pid);

    // handing-over → serving, nothing else (an exec child that never said hello
    // never started a handover).
    const phases = fromPredecessor()
      .filter((e) => e.event === 'phase')
      .map((e) => (e.args as string[])[0]);
    assert.deepEqual(phases, via === 'exec' && mode === 'syntax' ? [] : ['handing-over', 'serving']);
    if (phases.length > 0) {
      const start = fromPredecessor().find((e) => e.event === 'upgrade-start');
      assert.equal((start?.args as { pid: number }[] | undefined)?.[0]?.pid, childPid, "'upgrade-start' named the same successor");
    }
  }

  // --- the failed successor is gone ---
  if (via === 'takeover' && successor && mode !== 'syntax') {
    if (mode === 'freeze') {
      // Deaf and not our predecessor's child: only its spawner can end it.
      assert.equal(successor.exitCode, null, 'a frozen successor is still there');
      successor.kill('SIGKILL');
    }
    const [code, signal] = await exitOf(successor);
    const expected = { crash: [null, 'SIGKILL'], exit: [3, null], throw: [1, null], hang: [5, null], freeze: [null, 'SIGKILL'] }[mode];
    assert.deepEqual([code, signal], expected, `successor in mode ${mode} ended as expected`);
    if (mode === 'hang') {
      // The predecessor's abort reached it: it failed with the predecessor's reason.
      const aborted = log.events.find((e) => e.event === 'failed' && e.pid === successor.pid);
      assert.equal(aborted?.code, 'ERR_BATON_READY_TIMEOUT');
    }
  }
  if (via === 'exec') {
    await waitGone(childPid!, 10 * KILL_GRACE_MS);
    if (mode === 'freeze') {
      // SIGTERM went out before 'upgrade-failed'; it is ignored, so only the SIGKILL
      // killGraceMs later ends the child.
      const sinceFailure = performance.now() - failedAt!;
      assert.ok(
        sinceFailure >= KILL_GRACE_MS / 2,
        `frozen child gone ${Math.round(sinceFailure)} ms after upgrade-failed: SIGTERM alone must not end it`,
      );
    }
  }

  // --- the predecessor is intact: it serves, accepts and can still be upgraded ---
  assert.deepEqual(await freshRequests(origin, 5), [1, 1, 1, 1, 1], 'new connections are served by the predecessor');
  assert.equal(load.result.failed, 0, `failed requests after the failure: ${load.result.errors.join('; ')}`);

  const since2 = log.events.length;
  if (via === 'takeover') {
    spawnFixture(fixture('server'), env, log);
  } else {
    if (copy) fs.writeFileSync(copy.script, copy.good);
    else fs.writeFileSync(modeFile, 'normal');
    process.kill(pid1, 'SIGUSR2');
  }
  const next = await log.waitFor((e) => e.event === 'ready' && e.generation === 2, 'generation 2 ready', 30_000, since2);
  assert.equal(next.origin, via);
  const upgraded = await log.waitFor((e) => e.event === 'upgrade' && e.pid === pid1, 'upgrade', 30_000, since2);
  assert.equal((upgraded.args as { successorPid: number }[])[0]!.successorPid, next.pid);
  await load.waitForGeneration((g) => g === 2);
  const result = await stopLoad();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  assert.ok(result.ok > CONNECTIONS, `only ${result.ok} requests completed`);
  assert.ok(result.generations.get(1)! > 0 && result.generations.get(2)! > 0);

  await log.waitEvent('exit', pid1);
  // The predecessor's whole life, in order.
  const handedOver = mode !== 'syntax';
  assert.deepEqual(
    log.events.filter((e: FixtureEvent) => e.event === 'phase' && e.pid === pid1).map((e) => (e.args as string[])[0]),
    ['serving', ...(handedOver ? ['handing-over', 'serving'] : []), 'handing-over', 'draining', 'exited'],
  );
  process.kill(next.pid, 'SIGTERM');
  await log.waitEvent('exit', next.pid);
}

for (const via of ['takeover', 'exec'] as const) {
  describe(`a failed successor on the ${via} path`, () => {
    for (const mode of MODES) {
      it(`${mode}: 0 failed requests, 'upgrade-failed', back to serving, next upgrade works`, (t) => failedSuccessorCase(t, via, mode));
    }
  });
}
