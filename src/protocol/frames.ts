import { BatonError } from '../core/errors.js';

/**
 * Wire format of the handover protocol. Every frame is
 *
 * ```
 * offset size field
 *      0    4 magic "BTON"
 *      4    1 protocol version (PROTOCOL_VERSION)
 *      5    1 frame type (FrameType)
 *      6    2 reserved, 0
 *      8    4 fd count (u32 BE): fds carried by this frame's bytes
 *     12    4 payload length (u32 BE)
 *     16    n payload: UTF-8 JSON
 * ```
 *
 * The magic and the version byte keep their place in every future version, so
 * a peer of another version is recognised and refused with a clear message.
 * Fds travel as SCM_RIGHTS attached to bytes of the frame that declares them.
 *
 * Additions that an older peer of the same version can live without are
 * features, not versions: each is named in the sender's Hello (`features`),
 * and a frame type that belongs to a feature is sent only to a peer that named
 * it. A peer that names none is spoken to as before. Features:
 * - `ping` (frame types Ping and Pong): the sender answers every Ping with a
 *   Pong carrying the same payload, whenever it reads one. The predecessor
 *   pings a ready successor that named it (the liveness check).
 * - `late-state` (frame type LateState): while it drains into a successor
 *   that named it, the predecessor sends state that is complete only after
 *   the cutover (socket.io's connection-recovery store, once its sessions
 *   closed), one frame per key, before Done (handover/late-state.ts).
 */
export const PROTOCOL_VERSION = 1;
export const MAGIC = 0x42544f4e; // "BTON"
export const HEADER_BYTES = 16;

/** Frame types; the numbers are part of the wire format. */
export const FrameType = {
  /** Both sides, first: who am I. */
  Hello: 1,
  /** Predecessor → successor: the listener manifest; carries the listening fds (takeover path). */
  Listeners: 2,
  /** Predecessor → successor: the app state (JSON value). */
  State: 3,
  /** Successor → predecessor: listeners are up, stop accepting. */
  Ready: 4,
  /** Predecessor → successor: stopped accepting, draining now. */
  Draining: 5,
  /** Predecessor → successor: drain finished, exiting. */
  Done: 6,
  /** Either side: a failure with a stable code; the sender closes afterwards. */
  Error: 7,
  /** Predecessor → successor, while draining: a batch of live connections; carries their fds. */
  Connections: 8,
  /** Successor → predecessor: which connections of a batch it adopted. */
  ConnectionsAck: 9,
  /** Feature `ping`; predecessor → successor: are you alive? Answered with a Pong of the same payload. */
  Ping: 10,
  /** Feature `ping`: the answer to a Ping. */
  Pong: 11,
  /** Feature `late-state`; predecessor → successor, after Draining and before Done: `{key, value}`. */
  LateState: 12,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const typeNames = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

/** Name of a frame type for messages, e.g. `Hello`. */
export function frameTypeName(type: number): string {
  return typeNames.get(type) ?? `unknown(${type})`;
}

/** Payload of a Hello frame. */
export interface HelloPayload {
  protocol: number;
  pid: number;
  /** The sender's generation number (a successor sends 0: it learns its number from the reply). */
  generation: number;
  /** The server name given to start(). */
  name: string;
  /** Node.js version of the sender, for reports. */
  node: string;
  /**
   * Predecessor only: connections it holds now, which may migrate once the successor is
   * ready; the successor sizes its fd table for them ahead of time (optional: older
   * predecessors do not send it).
   */
  connections?: number;
  /**
   * Successor only: data consistency mode — the predecessor stops taking requests and
   * finishes those in flight before it sends the State (handover/quiesce.ts).
   */
  consistency?: boolean;
  /**
   * Successor only: what app it runs (zero-code: the entry file's absolute path), and
   * whether its name was given on purpose; a predecessor running another app refuses an
   * unnamed successor (ERR_BATON_APP_MISMATCH).
   */
  app?: string;
  namedOnPurpose?: boolean;
  /** The optional protocol features the sender speaks (see the module comment); absent means none. */
  features?: string[];
  /**
   * Predecessor only: the older generations of the server it knows are still
   * alive (draining), newest first; the successor adds the predecessor itself
   * and bounds the generations alive with them (handover/lineage.ts). Absent
   * from older predecessors.
   */
  lineage?: LineageEntry[];
}

/** One older generation in a Hello's lineage: its pid and the start time that makes the pid unambiguous. */
export interface LineageEntry {
  pid: number;
  /** Its generation number. */
  generation: number;
  /** The process's start time, /proc/<pid>/stat field 22 (clock ticks since boot). */
  start: string;
}

/** The features this build speaks, announced in its Hello. */
export const FEATURES: readonly string[] = ['ping', 'late-state'];

/** True when `hello` announces `feature` (a malformed list announces nothing). */
export function hasFeature(hello: Partial<HelloPayload> | undefined, feature: string): boolean {
  return Array.isArray(hello?.features) && hello.features.includes(feature);
}

/** Payload of a LateState frame: one key's value (JSON). */
export interface LateStatePayload {
  key: string;
  value: unknown;
}

/** Payload of Ping and Pong frames: the Pong echoes its Ping's number. */
export interface PingPayload {
  seq: number;
}

/** One listener in the manifest. */
export interface ListenerEntry {
  name: string;
  /** A stream listener (`tcp`, `unix`) or a datagram socket (`udp4`, `udp6`). */
  kind: 'tcp' | 'unix' | 'udp4' | 'udp6';
  /** TCP and UDP: bound address; unix: socket path. */
  address: string;
  /** TCP and UDP only. */
  port?: number;
  /**
   * Exec path: the fd number the successor inherited for this listener.
   * Takeover path: absent — the fds ride on the frame, in manifest order.
   */
  inheritedFd?: number;
}

export interface ListenersPayload {
  listeners: ListenerEntry[];
}

export interface StatePayload {
  /** True when the predecessor supplied a state value. */
  present: boolean;
  value?: unknown;
}

export interface ReadyPayload {
  /** Listeners the successor serves on. */
  listeners: number;
}

export interface DrainingPayload {
  /** Connections open in the predecessor when it stopped accepting. */
  connections: number;
}

export interface DonePayload {
  /** Connections that closed by themselves or after `Connection: close` / GOAWAY. */
  drained: number;
  /** Connections handed to the successor alive. */
  migrated: number;
  /** Connections closed by force at the drain timeout. */
  forced: number;
  durationMs: number;
}

/**
 * What kind of connection is migrated, which decides how the successor adopts
 * it: the name of a migration kind (src/migrate/kinds.ts is the one list).
 * A kind the successor does not
 * know is refused for that entry only.
 */
export type MigratedKind = string;

/** One live connection in a Connections frame; its fd rides on the frame, in entry order. */
export interface MigratedConnection {
  /** Unique within the handover; the ack names it. */
  id: number;
  /** The listener (by name) whose server accepted it. */
  listener: string;
  kind: MigratedKind;
  /** Bytes read from the socket but not consumed by the app, base64 (kinds that have them, e.g. raw sockets, WebSockets). */
  head?: string;
  /** State for this connection (its kind's travel state), JSON. */
  state?: unknown;
}

export interface ConnectionsPayload {
  batch: number;
  connections: MigratedConnection[];
}

export interface ConnectionsAckPayload {
  batch: number;
  /** Ids the successor adopted: the predecessor closes its own fd of each, nothing more. */
  adopted: number[];
  /** Ids it could not adopt, with the reason: the predecessor keeps and drains them. */
  refused: { id: number; reason: string }[];
}

export interface ErrorPayload {
  code: string;
  message: string;
}

/** A decoded frame. The receiver owns `fds` and must close the ones it does not keep. */
export interface Frame {
  version: number;
  type: FrameType;
  payload: unknown;
  fds: number[];
}

/** The payload type of each frame type; payloads.ts holds the schema of each, checked against these at compile time. */
export interface FramePayloads {
  [FrameType.Hello]: HelloPayload;
  [FrameType.Listeners]: ListenersPayload;
  [FrameType.State]: StatePayload;
  [FrameType.Ready]: ReadyPayload;
  [FrameType.Draining]: DrainingPayload;
  [FrameType.Done]: DonePayload;
  [FrameType.Error]: ErrorPayload;
  [FrameType.Connections]: ConnectionsPayload;
  [FrameType.ConnectionsAck]: ConnectionsAckPayload;
  [FrameType.Ping]: PingPayload;
  [FrameType.Pong]: PingPayload;
  [FrameType.LateState]: LateStatePayload;
}

/**
 * A frame whose payload was decoded with its type's schema (payloads.ts
 * `checkPayload`; FramePeer hands out only such frames). The union of every
 * type, so a check of `type` narrows `payload`.
 */
export type DecodedFrame<T extends FrameType = FrameType> = {
  [K in T]: Omit<Frame, 'type' | 'payload'> & { type: K; payload: FramePayloads[K] };
}[T];

/** Encodes one frame. Throws ERR_BATON_FRAME_TOO_LARGE when the payload exceeds `maxBytes`. */
export function encodeFrame(type: FrameType, payload: unknown, fdCount: number, maxBytes: number): Buffer {
  const body = Buffer.from(JSON.stringify(payload ?? null), 'utf8');
  if (body.length > maxBytes) {
    throw new BatonError(
      'ERR_BATON_FRAME_TOO_LARGE',
      `${frameTypeName(type)} frame of ${body.length} bytes exceeds the limit of ${maxBytes} bytes`,
    );
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  frame.writeUInt32BE(MAGIC, 0);
  frame.writeUInt8(PROTOCOL_VERSION, 4);
  frame.writeUInt8(type, 5);
  frame.writeUInt16BE(0, 6);
  frame.writeUInt32BE(fdCount, 8);
  frame.writeUInt32BE(body.length, 12);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/** Frame types whose bytes may carry fds; every other frame must declare and carry none. */
const FD_CARRYING: ReadonlySet<number> = new Set([FrameType.Listeners, FrameType.Connections]);

/** True when a frame of `type` may carry fds (Listeners, Connections). */
export function carriesFds(type: number): boolean {
  return FD_CARRYING.has(type);
}

/**
 * Incremental decoder: feed it bytes and the fds that arrived with them; it
 * yields whole frames with their fds. Any violation throws a BatonError, after
 * which the decoder is poisoned and the connection must be closed; fds it still
 * held are closed through `closeFd`.
 *
 * Fds are refused as soon as they cannot belong where they arrived: on a frame
 * type that carries none (Hello, State, …), or beyond the count the frame's
 * header declared. Received bytes are kept as the chunks they came in and
 * copied once, when a frame is complete, so a large frame costs its size and
 * not its size times the number of reads.
 */
export class FrameDecoder {
  readonly #maxBytes: number;
  /** Until a Hello frame was decoded: the smaller limit of a peer that has not said hello. */
  #preAuthBytes: number | undefined;
  readonly #closeFd: (fd: number) => void;
  /** Bytes received and not yet decoded, as received. */
  #chunks: Buffer[] = [];
  #length = 0;
  /** Stream offset of the first byte in #chunks. */
  #base = 0;
  /** Received fds with the stream offset of the byte they arrived with. */
  #fds: { offset: number; fd: number }[] = [];
  #failed = false;

  /**
   * `maxBytes`: largest payload accepted. `preAuthBytes`: a smaller limit that
   * applies to the frames before the first Hello (frames after it in the same
   * read already get `maxBytes`).
   */
  constructor(options: { maxBytes: number; preAuthBytes?: number; closeFd: (fd: number) => void }) {
    this.#maxBytes = options.maxBytes;
    this.#preAuthBytes = options.preAuthBytes;
    this.#closeFd = options.closeFd;
  }

  /**
   * Adds the bytes of one read (one recvmsg: never more than one fd-carrying
   * segment) and the fds that came with it; returns the frames now complete.
   */
  push(chunk: Buffer, fds: readonly number[] = []): Frame[] {
    if (this.#failed) {
      for (const fd of fds) this.#closeFd(fd);
      return [];
    }
    // The kernel ends a read right after the segment that carried fds, and may
    // have glued fd-less segments before it: the fds belong to the segment that
    // ends this chunk, so the chunk's last byte is one of theirs.
    const offset = this.#base + this.#length + chunk.length - 1;
    for (const fd of fds) this.#fds.push({ offset, fd });
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
    }
    const frames: Frame[] = [];
    try {
      for (;;) {
        const frame = this.#next();
        if (!frame) break;
        frames.push(frame);
      }
    } catch (err) {
      for (const f of frames) for (const fd of f.fds) this.#closeFd(fd);
      this.dispose();
      this.#failed = true;
      throw err;
    }
    return frames;
  }

  /** Closes every fd the decoder still holds. Idempotent. */
  dispose(): void {
    for (const { fd } of this.#fds) this.#closeFd(fd);
    this.#fds = [];
    this.#chunks = [];
    this.#length = 0;
  }

  /** The first `n` (≤ #length) undecoded bytes as one buffer, joining only the chunks needed. */
  #head(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first;
    let joined = 0;
    let count = 0;
    while (joined < n) joined += this.#chunks[count++]!.length;
    const merged = Buffer.concat(this.#chunks.slice(0, count), joined);
    this.#chunks.splice(0, count, merged);
    return merged;
  }

  /** Drops the first `n` undecoded bytes. */
  #consume(n: number): void {
    this.#base += n;
    this.#length -= n;
    while (n > 0) {
      const first = this.#chunks[0]!;
      if (first.length <= n) {
        this.#chunks.shift();
        n -= first.length;
      } else {
        this.#chunks[0] = first.subarray(n);
        n = 0;
      }
    }
  }

  #next(): Frame | undefined {
    const available = this.#length;
    if (available < 4) {
      // Judge the magic as soon as its bytes are here, so garbage is refused early.
      const buf = available > 0 ? this.#head(available) : undefined;
      if (buf && !Buffer.from([0x42, 0x54, 0x4f, 0x4e]).subarray(0, buf.length).equals(buf.subarray(0, available))) {
        throw badMagic(buf);
      }
      return undefined;
    }
    const start = this.#head(Math.min(available, HEADER_BYTES));
    if (start.readUInt32BE(0) !== MAGIC) throw badMagic(start);
    if (available < 5) return undefined;
    const version = start.readUInt8(4);
    if (version !== PROTOCOL_VERSION) {
      throw new BatonError(
        'ERR_BATON_PROTOCOL_VERSION',
        `peer speaks handover protocol version ${version}; this build speaks version ${PROTOCOL_VERSION} only`,
      );
    }
    if (available < HEADER_BYTES) return undefined;
    const type = start.readUInt8(5);
    if (!typeNames.has(type)) {
      throw new BatonError('ERR_BATON_BAD_FRAME', `unknown frame type ${type}`);
    }
    const fdCount = start.readUInt32BE(8);
    const length = start.readUInt32BE(12);
    if (length > this.#maxBytes) {
      throw new BatonError(
        'ERR_BATON_FRAME_TOO_LARGE',
        `${frameTypeName(type)} frame announces ${length} bytes; the limit is ${this.#maxBytes} bytes`,
      );
    }
    if (this.#preAuthBytes !== undefined && length > this.#preAuthBytes) {
      throw new BatonError(
        'ERR_BATON_FRAME_TOO_LARGE',
        `${frameTypeName(type)} frame announces ${length} bytes; before the Hello exchange the limit is ${this.#preAuthBytes} bytes (preAuthFrameBytes)`,
      );
    }
    if (fdCount !== 0 && !FD_CARRYING.has(type)) {
      throw new BatonError('ERR_BATON_BAD_FRAME', `${frameTypeName(type)} frame declares ${fdCount} fds; it carries none`);
    }
    const end = this.#base + HEADER_BYTES + length;
    let taken = 0;
    while (taken < this.#fds.length && this.#fds[taken]!.offset < end) taken++;
    if (taken > fdCount) {
      // More fds than declared already arrived: refuse now, not when the frame is complete.
      throw new BatonError('ERR_BATON_BAD_FRAME', `${frameTypeName(type)} frame declares ${fdCount} fds but ${taken} arrived with it`);
    }
    if (available < HEADER_BYTES + length) return undefined;
    const fds = this.#fds.splice(0, taken).map((e) => e.fd);
    if (fds.length !== fdCount) {
      for (const fd of fds) this.#closeFd(fd);
      throw new BatonError('ERR_BATON_BAD_FRAME', `${frameTypeName(type)} frame declares ${fdCount} fds but ${fds.length} arrived with it`);
    }
    const buf = this.#head(HEADER_BYTES + length);
    let payload: unknown;
    try {
      payload = JSON.parse(buf.toString('utf8', HEADER_BYTES, HEADER_BYTES + length));
    } catch (err) {
      for (const fd of fds) this.#closeFd(fd);
      throw new BatonError('ERR_BATON_BAD_FRAME', `${frameTypeName(type)} frame payload is not valid JSON`, {
        cause: err,
      });
    }
    this.#consume(HEADER_BYTES + length);
    // The peer introduced itself (the FramePeer checks what it said): larger frames may follow.
    if (type === FrameType.Hello) this.#preAuthBytes = undefined;
    return { version, type: type as FrameType, payload, fds };
  }
}

function badMagic(buf: Buffer): BatonError {
  const shown = buf.subarray(0, 8).toString('hex');
  return new BatonError('ERR_BATON_BAD_FRAME', `not a baton frame (first bytes 0x${shown}, expected magic "BTON")`);
}
