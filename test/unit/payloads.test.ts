/**
 * The payload checks of the two migration frames (Connections, ConnectionsAck):
 * their per-connection entries are checked by one loop each inside the zod
 * schema (protocol/payloads.ts), for speed; these cases pin that the loop keeps
 * the rules — every bad field is refused with ERR_BATON_BAD_FRAME naming the
 * entry and the field — and that good frames pass unchanged.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { checkPayload } from '../../src/protocol/payloads.js';

const frame = (type: FrameType, payload: unknown, fds: number[] = []) => ({ type, payload, fds }) as unknown as Frame;
const entry = (id: number, extra: Record<string, unknown> = {}) => ({ id, listener: 'http', kind: 'http1', ...extra });

function refused(f: Frame, field: RegExp): void {
  assert.throws(
    () => checkPayload(f, 'predecessor pid 7'),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_BATON_BAD_FRAME');
      assert.match(err.message, /^predecessor pid 7 sent a Connections(Ack)? frame with a bad payload: /);
      assert.match(err.message, field);
      return true;
    },
  );
}

describe('payloads: Connections entries', () => {
  it('passes good entries unchanged, heads and states included', () => {
    const connections = [
      entry(1),
      entry(2, { kind: 'websocket', head: 'aGk=', state: { a: [1] } }),
      entry(3, { listener: 'x'.repeat(256) }),
    ];
    const decoded = checkPayload(frame(FrameType.Connections, { batch: 4, connections }, [10, 11, 12]), 'p');
    assert.deepEqual(decoded.payload, { batch: 4, connections });
  });

  it('refuses each bad field, naming the entry and the field', () => {
    const bad: [unknown, RegExp][] = [
      ['nope', /connections: expected an array/],
      [[entry(1), null], /connections\.1: expected an object/],
      [[entry(1), [1]], /connections\.1: expected an object/],
      [[entry(-1)], /connections\.0\.id: /],
      [[entry(1.5)], /connections\.0\.id: /],
      [[entry(2 ** 60)], /connections\.0\.id: /],
      [[{ ...entry(1), id: '1' }], /connections\.0\.id: /],
      [[entry(1), entry(2, { listener: '' })], /connections\.1\.listener: /],
      [[entry(1, { listener: 'x'.repeat(257) })], /connections\.0\.listener: /],
      [[entry(1, { listener: 5 })], /connections\.0\.listener: /],
      [[entry(1, { kind: 'HTTP1' })], /connections\.0\.kind: a migration kind is a short lower-case name/],
      [[entry(1, { kind: '__proto__' })], /connections\.0\.kind: /],
      [[entry(1, { kind: undefined })], /connections\.0\.kind: /],
      [[entry(1, { head: 'not base64!' })], /connections\.0\.head: expected base64/],
      [[entry(1, { head: 'abc' })], /connections\.0\.head: /],
      [[entry(1, { head: 7 })], /connections\.0\.head: /],
    ];
    for (const [connections, field] of bad) {
      const n = Array.isArray(connections) ? connections.length : 0;
      refused(
        frame(
          FrameType.Connections,
          { batch: 1, connections },
          Array.from({ length: n }, (_, i) => 20 + i),
        ),
        field,
      );
    }
  });

  it('still checks the fd count against the entries', () => {
    assert.throws(
      () => checkPayload(frame(FrameType.Connections, { batch: 1, connections: [entry(1), entry(2)] }, [5]), 'p'),
      /naming 2 connections with 1 fds/,
    );
  });
});

describe('payloads: ConnectionsAck ids', () => {
  it('passes good ids unchanged', () => {
    const payload = { batch: 2, adopted: [0, 5, Number.MAX_SAFE_INTEGER], refused: [{ id: 3, reason: 'no' }] };
    assert.deepEqual(checkPayload(frame(FrameType.ConnectionsAck, payload), 'p').payload, payload);
  });

  it('refuses a bad id, naming its index', () => {
    for (const [adopted, field] of [
      [{ length: 1 }, /adopted: expected an array/],
      [[1, -2], /adopted\.1: expected a non-negative integer/],
      [[1, 2, 3.5], /adopted\.2: /],
      [['1'], /adopted\.0: /],
      [[NaN], /adopted\.0: /],
    ] as [unknown, RegExp][]) {
      refused(frame(FrameType.ConnectionsAck, { batch: 1, adopted, refused: [] }), field);
    }
  });
});
