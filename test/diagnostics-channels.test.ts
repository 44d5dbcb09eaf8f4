/**
 * The diagnostics channels of one takeover, as a subscriber in each process
 * sees them (test/fixtures/observe-channels.ts is preloaded into both): the
 * `baton:phase` events of each generation are exactly its `phaseHistory`,
 * in order, each `from` the previous `to`; the `baton:handover:step` events
 * follow the protocol (docs/architecture.md, "The handover, step by step")
 * on both sides, interleaved with the phases where the protocol moves them;
 * and the `baton:migration:batch` events add up to what the predecessor's
 * Done reports as migrated.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Client } from 'undici';
import type { BatchEvent, PhaseEvent, StepEvent } from '../src/index.js';
import {
  EventLog,
  fixture,
  killAll,
  pidsOf,
  predecessorDone,
  spawnFixture,
  tempDir,
  upgradeFixture,
  type FixtureEvent,
} from './helpers/server-process.js';

const log = new EventLog();
after(() => killAll(pidsOf(log)));

/** One process's channel events and phase-history markers, in publish order: `phase:<to>` or `step:<step>` or `batch`. */
function sequence(pid: number): { marks: string[]; phases: PhaseEvent[]; batches: BatchEvent[] } {
  const marks: string[] = [];
  const phases: PhaseEvent[] = [];
  const batches: BatchEvent[] = [];
  for (const e of log.events) {
    if (e.pid !== pid || e.event !== 'channel') continue;
    if (e.channel === 'baton:phase') {
      const p = e.payload as PhaseEvent;
      phases.push(p);
      marks.push(`phase:${p.to}`);
    } else if (e.channel === 'baton:handover:step') {
      const s = e.payload as StepEvent;
      assert.equal(s.role, s.step.split('.')[0]);
      // Batches repeat; one mark per run of them.
      const mark = `step:${s.step}`;
      if (marks.at(-1) !== mark) marks.push(mark);
    } else if (e.channel === 'baton:migration:batch') {
      batches.push(e.payload as BatchEvent);
    }
  }
  return { marks, phases, batches };
}

test('one takeover: phase events equal phaseHistory, handover steps follow the protocol, batches add up to the migrated count', async () => {
  const preload = pathToFileURL(fixture('observe-channels')).href;
  const env = { BATON_SOCKET_DIR: tempDir(), KEEP_ALIVE_TIMEOUT_MS: '600000', NODE_OPTIONS: `--import ${preload}` };
  const first = spawnFixture(fixture('server'), env, log);
  const listening = await log.waitEvent('listening', first.pid);
  await log.waitEvent('ready', first.pid);
  // Idle keep-alive connections: they migrate with the takeover.
  const clients = Array.from({ length: 20 }, () => new Client(`http://127.0.0.1:${listening.http}`, { keepAliveTimeout: 600_000 }));
  for (const c of clients) await (await c.request({ path: '/', method: 'GET' })).body.text();
  const since = log.events.length;
  const ready = await upgradeFixture(log, env, 'takeover', first.pid!, 2, since);
  const done = await predecessorDone(log, ready, since);
  const exit: FixtureEvent = await log.waitEvent('exit', first.pid);
  for (const c of clients) await (await c.request({ path: '/', method: 'GET' })).body.text();
  await Promise.all(clients.map((c) => c.close()));

  // The predecessor: every phase it entered was published, in order, and nothing else.
  const pred = sequence(first.pid!);
  const history = exit.phaseHistory as string[];
  assert.deepEqual(
    pred.phases.map((p) => p.to),
    history.slice(1),
  );
  pred.phases.forEach((p, i) => {
    assert.equal(p.from, history[i]);
    assert.equal(p.role, 'generation');
    assert.equal(p.generation, 1);
    assert.ok(p.durationMs >= 0);
  });
  assert.deepEqual(pred.marks, [
    'phase:serving',
    'step:predecessor.hello-received',
    'phase:handing-over',
    'step:predecessor.listeners-sent',
    'step:predecessor.state-sent',
    'step:predecessor.ready-received',
    'phase:draining',
    'step:predecessor.draining-sent',
    'step:predecessor.connections-sent',
    'step:predecessor.done-sent',
    'phase:exited',
  ]);

  // The successor: the same for its phases so far (it serves), and its side of the protocol.
  const succ = sequence(ready.pid!);
  const succHistory = ready.phaseHistory as string[];
  assert.deepEqual(succ.phases.map((p) => p.to).slice(0, succHistory.length - 1), succHistory.slice(1));
  assert.equal(succ.phases[0]!.generation, 2);
  assert.deepEqual(succ.marks, [
    'step:successor.connected',
    'step:successor.hello-sent',
    'step:successor.listeners-received',
    'step:successor.state-received',
    'phase:taking-over',
    'step:successor.ready-sent',
    'step:successor.draining-received',
    'phase:serving',
    'step:successor.connections-received',
    'step:successor.connections-acked',
    'step:successor.done-received',
  ]);

  // Batches: one per Connections frame the predecessor sent; adopted ones add up to Done's migrated.
  const sent = log.events.filter(
    (e) => e.pid === first.pid && e.event === 'channel' && (e.payload as StepEvent).step === 'predecessor.connections-sent',
  ).length;
  assert.equal(pred.batches.length, sent);
  assert.deepEqual(
    pred.batches.map((b) => b.batch),
    Array.from({ length: sent }, (_, i) => i + 1),
  );
  const adopted = pred.batches.reduce((n, b) => n + Object.values(b.adopted).reduce((a, x) => a + x, 0), 0);
  assert.equal(done.migrated, clients.length);
  assert.equal(adopted, done.migrated);
  assert.deepEqual(Object.keys(pred.batches[0]!.adopted), ['http1']);
});

test('NODE_DEBUG=baton traces each phase, handover step and migration batch as text on stderr; nothing without it', async () => {
  const dir = tempDir();
  const first = spawnFixture(fixture('server'), { BATON_SOCKET_DIR: dir, NODE_DEBUG: 'baton' }, log);
  // Its stderr is read on a pipe of its own: every line of it is in only once the process closed its stdio.
  const firstClosed = once(first, 'close');
  const listening = await log.waitEvent('listening', first.pid);
  await log.waitEvent('ready', first.pid);
  // Idle keep-alive connections: they migrate in a batch.
  const clients = Array.from({ length: 4 }, () => new Client(`http://127.0.0.1:${listening.http}`, { keepAliveTimeout: 600_000 }));
  for (const c of clients) await (await c.request({ path: '/', method: 'GET' })).body.text();
  const since = log.events.length;
  // The successor without NODE_DEBUG: it traces nothing.
  const next = await upgradeFixture(log, { BATON_SOCKET_DIR: dir, NODE_DEBUG: '' }, 'takeover', first.pid!, 2, since);
  await firstClosed;
  const traced = (pid: number) =>
    log.output.filter((l) => l.startsWith(`[stderr ${pid}] BATON ${pid}: `)).map((l) => l.slice(`[stderr ${pid}] BATON ${pid}: `.length));
  const lines = traced(first.pid!);
  for (const [from, to] of [
    ['starting', 'serving'],
    ['serving', 'handing-over'],
    ['handing-over', 'draining'],
    ['draining', 'exited'],
  ])
    assert.ok(
      lines.some((l) => new RegExp(`^generation 1 \\(pid ${first.pid}\\): ${from} -> ${to} after \\d+\\.\\d ms$`).test(l)),
      `${from} -> ${to} in:\n${lines.join('\n')}`,
    );
  for (const step of ['predecessor.hello-received', 'predecessor.ready-received', 'predecessor.connections-sent', 'predecessor.done-sent'])
    assert.ok(lines.includes(`step ${step} (pid ${first.pid})`), `${step} in:\n${lines.join('\n')}`);
  assert.ok(
    lines.some((l) => new RegExp(`^migration batch 1 \\(pid ${first.pid}\\): adopted \\{"http1":\\d+\\}`).test(l)),
    `a migration batch in:\n${lines.join('\n')}`,
  );
  assert.deepEqual(traced(next.pid!), [], 'no trace without NODE_DEBUG');
  for (const c of clients) await c.close();
  process.kill(next.pid!, 'SIGTERM');
  await log.waitEvent('exit', next.pid);
});
