/**
 * What a master reads from other processes is decoded before anything acts on
 * it (src/supervisor/wire.ts), and a worker's inputs likewise
 * (src/supervisor/worker-link.ts): well-formed messages come through as they
 * are, anything else is dropped, a damaged state file's counters start from
 * zero — never a cast that lets a wrong type through.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMasterLinkMessage, decodeStateFileCounters, decodeWorkerMessage } from '../src/supervisor/wire.js';
import { decodeMasterMessage, takeSupervision } from '../src/supervisor/worker-link.js';

describe('supervisor wire decoding', () => {
  it("decodes a worker's messages and drops malformed ones", () => {
    const phase = { baton: 'worker', type: 'phase', phase: 'serving', generation: 2, origin: 'takeover', socketPath: '/run/x.sock' };
    assert.deepEqual(decodeWorkerMessage(phase), phase);
    const failed = { baton: 'worker', type: 'listen-failed', name: 'http', address: '127.0.0.1:80', message: 'EADDRINUSE' };
    assert.deepEqual(decodeWorkerMessage(failed), failed);
    const observed = { baton: 'worker', type: 'observe', observed: { channel: 'batch', event: { adopted: 1 } } };
    assert.deepEqual(decodeWorkerMessage(observed), observed);
    assert.equal(decodeWorkerMessage({ ...observed, observed: { channel: 'secrets', event: {} } }), undefined);
    for (const bad of [
      null,
      'serving',
      { ...phase, phase: 'dancing' },
      { ...phase, generation: Number.NaN },
      { ...phase, generation: -1 },
      { ...phase, baton: 'master' },
      { baton: 'worker', type: 'drained', migrated: 1, drained: '2', forced: 0 },
      { baton: 'worker', type: 'listener' },
      { baton: 'worker', type: 'unknown' },
    ]) {
      assert.equal(decodeWorkerMessage(bad), undefined, JSON.stringify(bad));
    }
  });

  it("decodes the other master's messages", () => {
    const absorb = { baton: 'old-master', type: 'absorb', workers: [{ slot: 0, socketPath: '/run/w0.sock' }] };
    assert.deepEqual(decodeMasterLinkMessage(absorb), absorb);
    assert.deepEqual(decodeMasterLinkMessage({ baton: 'new-master', type: 'ready', pid: 42 }), {
      baton: 'new-master',
      type: 'ready',
      pid: 42,
    });
    assert.equal(decodeMasterLinkMessage({ baton: 'new-master', type: 'ready', pid: 0 }), undefined);
    assert.equal(decodeMasterLinkMessage({ baton: 'old-master', type: 'absorb', workers: [{ slot: 'a' }] }), undefined);
  });

  it("reads a state file's counters; a damaged one gives none, a bad counter is left out", () => {
    const counters = { reloads: 3, upgrades: 1, restarts: 0, migrated: 10, drained: 2, forced: 0 };
    const names = Object.keys(counters) as (keyof typeof counters)[];
    assert.deepEqual(decodeStateFileCounters(JSON.stringify({ version: 1, name: 'web', counters }), names), counters);
    const damaged = { ...counters, forced: -5, drained: 'x' };
    assert.deepEqual(decodeStateFileCounters(JSON.stringify({ version: 1, counters: damaged }), names), {
      reloads: 3,
      upgrades: 1,
      restarts: 0,
      migrated: 10,
    });
    assert.equal(decodeStateFileCounters('{"version":1,', names), undefined);
    assert.equal(decodeStateFileCounters(JSON.stringify({ version: 2, counters }), names), undefined);
  });

  it("decodes the master's messages and the supervision variable in a worker", () => {
    assert.deepEqual(decodeMasterMessage({ baton: 'master', type: 'stop', drainMs: 1500 }), {
      baton: 'master',
      type: 'stop',
      drainMs: 1500,
    });
    assert.deepEqual(decodeMasterMessage({ baton: 'master', type: 'status', extra: 1 }), { baton: 'master', type: 'status' });
    assert.equal(decodeMasterMessage({ baton: 'master', type: 'stop', drainMs: 'soon' }), undefined);
    assert.equal(decodeMasterMessage({ baton: 'master', type: 'absorb' }), undefined);
    assert.equal(decodeMasterMessage({ hello: 'from the app' }), undefined);

    const env: NodeJS.ProcessEnv = { BATON_SUPERVISED: JSON.stringify({ slot: 1, socketDir: '/run/d', masterPid: 7, drainMs: 100 }) };
    assert.deepEqual(takeSupervision(env), { slot: 1, socketDir: '/run/d', masterPid: 7, drainMs: 100 });
    assert.equal(env.BATON_SUPERVISED, undefined, 'the variable is removed');
    // Every setting the master passes arrives (timeouts.livenessMs was once dropped here).
    const full = { slot: 0, socketDir: '/run/d', masterPid: 7, drainMs: 100, livenessMs: 777 };
    assert.deepEqual(takeSupervision({ BATON_SUPERVISED: JSON.stringify(full) }), full);
    assert.equal(takeSupervision({ BATON_SUPERVISED: JSON.stringify({ ...full, livenessMs: -1 }) }), undefined);
    assert.equal(takeSupervision({ BATON_SUPERVISED: JSON.stringify({ slot: 1.5, socketDir: '/run/d', masterPid: 7 }) }), undefined);
    assert.equal(takeSupervision({ BATON_SUPERVISED: 'null' }), undefined);
    // The master's ticket-key setting, both ways; its keys come by IPC only, with string values only.
    for (const ticketKeys of [true, false]) {
      assert.deepEqual(takeSupervision({ BATON_SUPERVISED: JSON.stringify({ ...full, ticketKeys }) }), { ...full, ticketKeys });
    }
    assert.deepEqual(decodeMasterMessage({ baton: 'master', type: 'ticket-keys', keys: { http: 'a2V5', bad: 7 } }), {
      baton: 'master',
      type: 'ticket-keys',
      keys: { http: 'a2V5' },
    });
    assert.equal(decodeMasterMessage({ baton: 'master', type: 'ticket-keys' }), undefined);
    assert.deepEqual(decodeWorkerMessage({ baton: 'worker', type: 'ticket-keys' }), { baton: 'worker', type: 'ticket-keys' });
  });
});
