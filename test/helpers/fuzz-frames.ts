/**
 * Structure-aware generators for the fuzzers: frames of the handover protocol
 * with valid headers and mutated payloads, wrong types, wrong fd counts,
 * truncated bytes, oversize lengths, bad magic or version; and control-socket
 * request lines. Everything is drawn from a seeded PRNG, so a failing run is
 * reproduced by its seed (FUZZ_SEED).
 */
import { FrameType, HEADER_BYTES, MAGIC, PROTOCOL_VERSION } from '../../src/protocol/frames.js';

/** A small seeded PRNG (mulberry32): the same seed gives the same sequence. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** The seed of this run: FUZZ_SEED, or a fresh one (printed by the tests). */
export function fuzzSeed(): number {
  return process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
}

/** Values of every JSON type, including the hostile ones. */
function wildValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 1 ? 10 : 13)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -1, 1, 1.5, 1e308, -1e308, 2 ** 53, 4_194_305, 65536, Number.MAX_SAFE_INTEGER]);
    case 3:
      return rng.int(1000);
    case 4:
      return rng.pick(['', '__proto__', 'constructor', 'ERR_BATON_ABORTED', 'fixture', 'x'.repeat(300), '\u0000', '☃']);
    case 5:
      return rng.bytes(rng.int(12)).toString('latin1');
    case 6:
      return 'ERR_' + rng.bytes(4).toString('hex').toUpperCase();
    case 7:
      return rng.pick(['tcp', 'unix', 'http1', 'socket', 'websocket', 'http2', 'udp']);
    case 8:
      return rng.bytes(rng.int(16)).toString('base64');
    case 9:
      return rng.int(3);
    case 10:
      return Array.from({ length: rng.int(4) }, () => wildValue(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(4); i > 0; i--)
        o[rng.pick(['id', 'name', 'kind', 'code', '__proto__', 'x', 'listener'])] = wildValue(rng, depth + 1);
      return o;
    }
  }
}

/** A well-formed payload of each type, the starting point of mutations. */
export function validPayload(type: FrameType, rng: Rng, name = 'fixture'): unknown {
  switch (type) {
    case FrameType.Hello:
      return { protocol: PROTOCOL_VERSION, pid: 1 + rng.int(100_000), generation: rng.int(5), name, node: 'v20.0.0' };
    case FrameType.Listeners:
      return { listeners: [] };
    case FrameType.State:
      return { present: true, value: { n: rng.int(10) } };
    case FrameType.Ready:
      return { listeners: rng.int(3) };
    case FrameType.Draining:
      return { connections: rng.int(3) };
    case FrameType.Done:
      return { drained: 0, migrated: 0, forced: 0, durationMs: rng.int(100) };
    case FrameType.Error:
      return { code: 'ERR_BATON_ABORTED', message: 'fuzz' };
    case FrameType.Connections:
      return { batch: rng.int(3), connections: [] };
    default:
      return { batch: rng.int(3), adopted: [], refused: [] };
  }
}

/** `payload` with one or more fields deleted, replaced by wild values, or added. */
function mutate(payload: unknown, rng: Rng): unknown {
  if (rng.chance(0.1)) return wildValue(rng);
  if (typeof payload !== 'object' || payload === null) return wildValue(rng);
  const o = { ...(payload as Record<string, unknown>) };
  const keys = Object.keys(o);
  for (let i = 1 + rng.int(2); i > 0; i--) {
    const what = rng.int(3);
    if (what === 0 && keys.length > 0) delete o[rng.pick(keys)];
    else if (what === 1 && keys.length > 0) o[rng.pick(keys)] = wildValue(rng);
    else o[rng.pick(['extra', '__proto__', 'constructor', ...keys])] = wildValue(rng);
  }
  return o;
}

const FRAME_TYPES = Object.values(FrameType);

/** One generated frame: its bytes, how many fds ride on it, and whether it is cut short. */
export interface FuzzFrame {
  bytes: Buffer;
  fds: number;
  truncated: boolean;
  what: string;
}

/**
 * A frame for a peer at some stage of the protocol: usually of one of `types`
 * (the frames that stage expects), else of any type; with a mutated payload,
 * or a broken header, a wrong fd count, cut short, or not JSON at all.
 */
export function fuzzFrame(rng: Rng, types: readonly FrameType[], name = 'fixture'): FuzzFrame {
  const type = rng.chance(0.7) ? rng.pick(types) : rng.pick(FRAME_TYPES);
  let body: Buffer = Buffer.from(JSON.stringify(rng.chance(0.9) ? mutate(validPayload(type, rng, name), rng) : (wildValue(rng) ?? null)));
  let what = `type ${type} mutated payload`;
  if (rng.chance(0.05)) {
    body = rng.bytes(rng.int(40));
    what = `type ${type} not JSON`;
  }
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt8(PROTOCOL_VERSION, 4);
  header.writeUInt8(type, 5);
  let fds = 0;
  let declared = 0;
  let length = body.length;
  switch (rng.int(12)) {
    case 0:
      header.writeUInt32BE(rng.chance(0.5) ? rng.int(2 ** 32) : 0x47455420, 0);
      what = 'bad magic';
      break;
    case 1:
      header.writeUInt8(rng.pick([0, 2, 255]), 4);
      what = 'bad version';
      break;
    case 2:
      header.writeUInt8(rng.pick([0, 10, 99, 255]), 5);
      what = 'unknown type';
      break;
    case 3:
      length = rng.pick([0xffffffff, 16 * 1024 * 1024 + 1, 9000]);
      what = `oversize length ${length}`;
      break;
    case 4:
      declared = rng.int(4);
      fds = rng.int(3);
      what = `type ${type}: ${declared} fds declared, ${fds} attached`;
      break;
    case 5:
      fds = 1 + rng.int(2);
      declared = fds;
      what = `type ${type}: ${fds} fds declared and attached`;
      break;
    default:
      break;
  }
  header.writeUInt32BE(declared, 8);
  header.writeUInt32BE(length, 12);
  let bytes: Buffer = Buffer.concat([header, body]);
  const truncated = length !== body.length ? length < body.length : rng.chance(0.08);
  if (truncated || length > body.length) {
    // Cut short for real: never all of a frame whose length field is right.
    bytes = bytes.subarray(0, 1 + rng.int(Math.max(1, length > body.length ? bytes.length : bytes.length - 1)));
    what += ' (truncated)';
  }
  return { bytes, fds, truncated: truncated || length > body.length, what };
}

/** A control-socket request line: valid JSON of the wrong shape, garbage, or a huge line. */
export function fuzzControlLine(rng: Rng): { line: Buffer; what: string } {
  switch (rng.int(6)) {
    case 0:
      return { line: Buffer.from(`${JSON.stringify(mutate({ cmd: 'status' }, rng))}\n`), what: 'mutated request' };
    case 1:
      return { line: Buffer.from(`${JSON.stringify(wildValue(rng))}\n`), what: 'wild JSON' };
    case 2:
      return { line: Buffer.concat([rng.bytes(rng.int(200)), Buffer.from('\n')]), what: 'garbage' };
    case 3:
      return { line: Buffer.from(`{"cmd":"${'s'.repeat(70_000 + rng.int(10_000))}"}\n`), what: 'huge line' };
    case 4:
      return { line: Buffer.from(JSON.stringify({ cmd: 'status' })), what: 'no newline (unterminated)' };
    default:
      return { line: Buffer.from(`${JSON.stringify({ cmd: 'status' })}\n`), what: 'valid status request' };
  }
}
