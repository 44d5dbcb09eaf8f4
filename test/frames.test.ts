/**
 * The wire format (src/protocol/frames.ts): FrameDecoder reassembles frames
 * from any split of the byte stream, gives every frame exactly the fds that
 * rode on its bytes, refuses garbage, foreign versions and oversized frames as
 * early as the bytes allow, and never leaks an fd it was given — checked with
 * synthetic chunks and with real fds over a real socketpair.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { closeFd, UnixChannel } from '../src/native/index.js';
import { FrameDecoder, FrameType, HEADER_BYTES, MAGIC, PROTOCOL_VERSION, encodeFrame, type Frame } from '../src/protocol/frames.js';
import { tempDir } from './helpers/server-process.js';

const MAX = 1024 * 1024;

/** A decoder whose closeFd records instead of closing (synthetic fd numbers). */
function recordingDecoder(maxBytes = MAX): { decoder: FrameDecoder; closed: number[] } {
  const closed: number[] = [];
  return { decoder: new FrameDecoder({ maxBytes, closeFd: (fd) => closed.push(fd) }), closed };
}

/** A raw header, for frames encodeFrame would never produce. */
function header(fields: { magic?: number; version?: number; type?: number; fdCount?: number; length: number }): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32BE(fields.magic ?? MAGIC, 0);
  h.writeUInt8(fields.version ?? PROTOCOL_VERSION, 4);
  h.writeUInt8(fields.type ?? FrameType.Hello, 5);
  h.writeUInt32BE(fields.fdCount ?? 0, 8);
  h.writeUInt32BE(fields.length, 12);
  return h;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('FrameDecoder: reassembly', () => {
  it('decodes a whole frame with its version, type and payload', () => {
    const { decoder } = recordingDecoder();
    const payload = { protocol: 1, pid: 42, generation: 3, name: 'web', node: 'v20' };
    const frames = decoder.push(encodeFrame(FrameType.Hello, payload, 0, MAX));
    assert.equal(frames.length, 1);
    assert.deepEqual(frames[0], { version: PROTOCOL_VERSION, type: FrameType.Hello, payload, fds: [] });
  });

  it('completes each frame exactly at its last byte when fed one byte at a time', () => {
    const { decoder } = recordingDecoder();
    const payloads = [{ a: 1 }, { text: 'héllo ✓ — multi-byte UTF-8 split across pushes' }, { listeners: 2 }, null];
    const types = [FrameType.Hello, FrameType.State, FrameType.Ready, FrameType.Draining];
    const encoded = payloads.map((p, i) => encodeFrame(types[i]!, p, 0, MAX));
    const stream = Buffer.concat(encoded);
    const ends: number[] = [];
    let end = 0;
    for (const e of encoded) ends.push((end += e.length) - 1);

    const got: { at: number; frame: Frame }[] = [];
    for (let i = 0; i < stream.length; i++) {
      for (const frame of decoder.push(stream.subarray(i, i + 1))) got.push({ at: i, frame });
    }
    assert.deepEqual(
      got.map((g) => g.at),
      ends,
    );
    assert.deepEqual(
      got.map((g) => g.frame.payload),
      payloads,
    );
    assert.deepEqual(
      got.map((g) => g.frame.type),
      types,
    );
  });

  it('decodes several frames glued into one chunk', () => {
    const { decoder } = recordingDecoder();
    const chunk = Buffer.concat([1, 2, 3, 4, 5].map((n) => encodeFrame(FrameType.State, { present: true, value: n }, 0, MAX)));
    const frames = decoder.push(chunk);
    assert.deepEqual(
      frames.map((f) => (f.payload as { value: number }).value),
      [1, 2, 3, 4, 5],
    );
  });
});

describe('FrameDecoder: fds', () => {
  it('gives each frame the fds that arrived with its bytes', () => {
    const { decoder, closed } = recordingDecoder();
    const a = encodeFrame(FrameType.Hello, { n: 'a' }, 0, MAX);
    const b = encodeFrame(FrameType.Listeners, { n: 'b' }, 2, MAX);
    const c = encodeFrame(FrameType.State, { n: 'c' }, 0, MAX);
    const d = encodeFrame(FrameType.Listeners, { n: 'd' }, 1, MAX);
    const e = encodeFrame(FrameType.Listeners, { n: 'e' }, 1, MAX);
    const frames: Frame[] = [];
    // As the kernel delivers them: fd-less bytes may be glued before an fd-carrying
    // segment, and a read ends with the segment that carried fds.
    frames.push(...decoder.push(Buffer.concat([a, b.subarray(0, 3)]), [101, 102]));
    frames.push(...decoder.push(Buffer.concat([b.subarray(3), c])));
    frames.push(...decoder.push(d.subarray(0, HEADER_BYTES + 1), [103]));
    frames.push(...decoder.push(Buffer.concat([d.subarray(HEADER_BYTES + 1), e]), [104]));
    assert.deepEqual(
      frames.map((f) => [(f.payload as { n: string }).n, f.fds]),
      [
        ['a', []],
        ['b', [101, 102]],
        ['c', []],
        ['d', [103]],
        ['e', [104]],
      ],
    );
    assert.deepEqual(closed, [], 'no fd closed on the good path');
  });

  it('refuses a frame whose fd count does not match what arrived, closing every fd', () => {
    for (const [declared, arrived] of [
      [1, []],
      [0, [7]],
      [2, [8]],
      [1, [9, 10]],
    ] as const) {
      const { decoder, closed } = recordingDecoder();
      const frame = encodeFrame(FrameType.Listeners, { listeners: [] }, declared, MAX);
      assert.equal(
        codeOf(() => decoder.push(frame, arrived)),
        'ERR_BATON_BAD_FRAME',
        `declared ${declared}, arrived ${arrived.length}`,
      );
      assert.deepEqual(closed.sort(), [...arrived].sort(), `declared ${declared}: the arrived fds are closed`);
    }
  });

  it('closes the fds of frames decoded in the same push when a later frame is bad', () => {
    const { decoder, closed } = recordingDecoder();
    const good = encodeFrame(FrameType.Listeners, { listeners: [] }, 1, MAX);
    assert.deepEqual(decoder.push(good.subarray(0, 10), [5]), []);
    assert.equal(
      codeOf(() => decoder.push(Buffer.concat([good.subarray(10), Buffer.from('garbage')]))),
      'ERR_BATON_BAD_FRAME',
    );
    assert.deepEqual(closed, [5]);
  });

  it('is poisoned after an error: later bytes are ignored and their fds closed', () => {
    const { decoder, closed } = recordingDecoder();
    assert.equal(
      codeOf(() => decoder.push(Buffer.from('nope'))),
      'ERR_BATON_BAD_FRAME',
    );
    assert.deepEqual(decoder.push(encodeFrame(FrameType.Listeners, {}, 1, MAX), [11]), []);
    assert.deepEqual(closed, [11]);
  });

  it('dispose() closes the fds of a partial frame, once', () => {
    const { decoder, closed } = recordingDecoder();
    const frame = encodeFrame(FrameType.Listeners, { listeners: [] }, 2, MAX);
    assert.deepEqual(decoder.push(frame.subarray(0, 20), [21, 22]), []);
    decoder.dispose();
    decoder.dispose();
    assert.deepEqual(closed, [21, 22]);
  });

  it('carries real fds over a socketpair to the right frames, whatever the read boundaries', async (t) => {
    const dir = tempDir();
    const files = Array.from({ length: 6 }, (_, i) => {
      const file = path.join(dir, `f${i}`);
      fs.writeFileSync(file, String(i));
      return fs.openSync(file, 'r');
    });
    const inoOf = (fd: number) => fs.fstatSync(fd).ino;
    const openBefore = fs.readdirSync('/proc/self/fd').length;

    const { channel: sender, peerFd } = UnixChannel.pair();
    const receiver = UnixChannel.fromFd(peerFd);
    t.after(() => {
      sender.close();
      receiver.close();
    });
    const decoder = new FrameDecoder({ maxBytes: 4 * MAX, closeFd });
    const frames: Frame[] = [];
    const COUNT = 60;
    const allIn = new Promise<void>((resolve, reject) => {
      receiver.on('data', (chunk, fds) => {
        try {
          frames.push(...decoder.push(chunk, fds));
        } catch (err) {
          reject(err as Error);
          receiver.close();
        }
        if (frames.length === COUNT) resolve();
      });
    });

    // Frames of random sizes (some far larger than one 64 KiB read) carrying 0–3 fds,
    // all queued at once so the kernel glues and splits them as it likes.
    const sent: { inos: number[] }[] = [];
    const writes: Promise<void>[] = [];
    for (let i = 0; i < COUNT; i++) {
      const fds = files.slice(0, i % 4).map((_, k) => files[(i + k) % files.length]!);
      const size = i % 7 === 0 ? 150_000 + i : (i * 977) % 5000;
      const payload = { i, inos: fds.map(inoOf), pad: 'p'.repeat(size) };
      sent.push(payload);
      writes.push(sender.write(encodeFrame(FrameType.Listeners, payload, fds.length, 4 * MAX), fds));
    }
    await Promise.all(writes);
    await allIn;

    assert.equal(frames.length, COUNT);
    frames.forEach((f, i) => {
      const p = f.payload as { i: number; inos: number[] };
      assert.equal(p.i, i, 'frames in order');
      assert.deepEqual(f.fds.map(inoOf), sent[i]!.inos, `frame ${i}: the fds are the files it carried`);
    });
    for (const f of frames) for (const fd of f.fds) closeFd(fd);
    sender.close();
    receiver.close();
    for (const fd of files) fs.closeSync(fd);
    assert.equal(fs.readdirSync('/proc/self/fd').length, openBefore - files.length, 'no fd leaked');
  });
});

describe('FrameDecoder: refusals', () => {
  it('refuses bad magic at the first byte that differs', () => {
    const { decoder } = recordingDecoder();
    assert.equal(
      codeOf(() => decoder.push(Buffer.from('G'))),
      'ERR_BATON_BAD_FRAME',
    );

    const second = recordingDecoder().decoder;
    assert.deepEqual(second.push(Buffer.from('BT')), [], 'a prefix of the magic waits for more');
    assert.equal(
      codeOf(() => second.push(Buffer.from('X'))),
      'ERR_BATON_BAD_FRAME',
    );

    const http = recordingDecoder().decoder;
    assert.throws(
      () => http.push(Buffer.from('GET / HTTP/1.1\r\n\r\n')),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_BATON_BAD_FRAME');
        assert.match(err.message, /0x474554/);
        return true;
      },
    );

    const random = recordingDecoder().decoder;
    let bytes = randomBytes(64);
    while (bytes[0] === 0x42) bytes = randomBytes(64);
    assert.equal(
      codeOf(() => random.push(bytes)),
      'ERR_BATON_BAD_FRAME',
    );
  });

  it('refuses another protocol version as soon as the version byte arrives', () => {
    const { decoder } = recordingDecoder();
    const frame = Buffer.concat([header({ version: 2, length: 2 }), Buffer.from('{}')]);
    for (let i = 0; i < 4; i++) assert.deepEqual(decoder.push(frame.subarray(i, i + 1)), []);
    assert.throws(
      () => decoder.push(frame.subarray(4, 5)),
      (err: Error & { code?: string }) => err.code === 'ERR_BATON_PROTOCOL_VERSION' && /version 2/.test(err.message),
    );
  });

  it('refuses an oversized frame from its header alone; a frame of exactly the limit passes', () => {
    const limit = 64;
    const { decoder } = recordingDecoder(limit);
    assert.throws(
      () => decoder.push(header({ type: FrameType.State, length: limit + 1 })),
      (err: Error & { code?: string }) => err.code === 'ERR_BATON_FRAME_TOO_LARGE' && /65 bytes/.test(err.message),
    );
    const huge = recordingDecoder(limit).decoder;
    assert.equal(
      codeOf(() => huge.push(header({ length: 0xffffffff }))),
      'ERR_BATON_FRAME_TOO_LARGE',
    );

    const exact = recordingDecoder(limit).decoder;
    const body = JSON.stringify('x'.repeat(limit - 2));
    assert.equal(Buffer.byteLength(body), limit);
    const frames = exact.push(Buffer.concat([header({ type: FrameType.State, length: limit }), Buffer.from(body)]));
    assert.equal(frames.length, 1);
  });

  it('refuses an unknown frame type and a payload that is not JSON, closing the frame fds', () => {
    const { decoder } = recordingDecoder();
    assert.equal(
      codeOf(() => decoder.push(header({ type: 99, length: 0 }))),
      'ERR_BATON_BAD_FRAME',
    );

    const json = recordingDecoder();
    const bad = Buffer.concat([header({ type: FrameType.Listeners, fdCount: 1, length: 5 }), Buffer.from('{nope')]);
    assert.equal(
      codeOf(() => json.decoder.push(bad, [31])),
      'ERR_BATON_BAD_FRAME',
    );
    assert.deepEqual(json.closed, [31]);
  });

  it('encodeFrame refuses a payload over the limit', () => {
    assert.equal(
      codeOf(() => encodeFrame(FrameType.State, 'x'.repeat(100), 0, 50)),
      'ERR_BATON_FRAME_TOO_LARGE',
    );
    assert.equal(encodeFrame(FrameType.State, 'x'.repeat(48), 0, 50).length, HEADER_BYTES + 50);
  });
});
