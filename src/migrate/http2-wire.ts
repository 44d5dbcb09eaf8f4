/**
 * The few pieces of HTTP/2's wire format (RFC 9113 §4, §6) that moving a live
 * session needs: walking frame headers, and the synthetic connection preface a
 * fresh nghttp2 session is fed in the successor. No HPACK: a migrating session
 * never has a dynamic decoding table (see http2-session.ts).
 */

export const FRAME_HEADER_BYTES = 9;
export const FrameKind = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;
const FLAG_ACK = 0x1;
/** The protocol's initial flow-control window, connection and streams (RFC 9113 §6.9.2). */
export const INITIAL_WINDOW = 65_535;
const CLIENT_MAGIC = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface FrameHeader {
  /** Offset of the frame's first byte. */
  at: number;
  length: number;
  type: number;
  flags: number;
  stream: number;
}

/** Frames sent by a client, checked only as far as a frame header can be. */
function plausibleClientFrame(h: FrameHeader, maxFrameSize: number): boolean {
  // The stream id's reserved high bit is always 0 (RFC 9113 §4.1).
  if (h.type > FrameKind.CONTINUATION || h.length > maxFrameSize || h.stream > 0x7fff_ffff) return false;
  const connectionLevel = h.type === FrameKind.SETTINGS || h.type === FrameKind.PING || h.type === FrameKind.GOAWAY;
  if (connectionLevel) return h.stream === 0;
  if (h.type === FrameKind.WINDOW_UPDATE) return h.length === 4;
  // Everything else names a client stream (odd); a client never sends PUSH_PROMISE.
  return h.stream !== 0 && h.stream % 2 === 1 && h.type !== FrameKind.PUSH_PROMISE;
}

export type FenceScan =
  /** The fence was found at a frame boundary: `frames` are the whole frames before it. */
  | { found: true; frames: FrameHeader[]; fenceAt: number; misaligned?: undefined }
  /** Not (all) there yet: read more. */
  | { found: false; misaligned?: undefined }
  /** These bytes do not start at a frame boundary, or are not HTTP/2 from a client. */
  | { found: false; misaligned: string };

/**
 * Walks the frames of `data` from its first byte, looking for the PING
 * acknowledgement carrying `fence` (8 bytes). Reaching it exactly at a frame
 * boundary, through plausible frame headers only, is what shows that `data`
 * starts at a frame boundary: bytes cut in the middle of a frame would have to
 * look like a chain of valid headers landing precisely on the fence.
 */
export function scanToFence(data: Buffer, fence: Buffer, maxFrameSize: number): FenceScan {
  const frames: FrameHeader[] = [];
  let at = 0;
  while (at + FRAME_HEADER_BYTES <= data.length) {
    const h: FrameHeader = {
      at,
      length: data.readUIntBE(at, 3),
      type: data[at + 3]!,
      flags: data[at + 4]!,
      stream: data.readUInt32BE(at + 5),
    };
    if (!plausibleClientFrame(h, maxFrameSize)) {
      return { found: false, misaligned: `no HTTP/2 frame header at byte ${at} (type ${h.type}, length ${h.length}, stream ${h.stream})` };
    }
    const end = at + FRAME_HEADER_BYTES + h.length;
    if (end > data.length) return { found: false };
    if (h.type === FrameKind.PING && h.flags & FLAG_ACK && h.length === 8 && data.subarray(at + 9, end).equals(fence)) {
      return { found: true, frames, fenceAt: at };
    }
    frames.push(h);
    at = end;
  }
  return { found: false };
}

/** One frame: the 9-byte header (length, type, flags, stream) and `payload`. */
export function encodeFrame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(FRAME_HEADER_BYTES);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** The client's settings as Node reports them (`session.remoteSettings`). */
export interface ClientSettings {
  headerTableSize?: number;
  enablePush?: boolean;
  maxConcurrentStreams?: number;
  initialWindowSize?: number;
  maxFrameSize?: number;
  maxHeaderListSize?: number;
}

/** A SETTINGS frame carrying what differs from the protocol's defaults (RFC 9113 §6.5.2). */
function settingsFrame(s: ClientSettings): Buffer {
  const entries: Buffer[] = [];
  const put = (id: number, value: number | undefined, fallback: number) => {
    if (value === undefined || value === fallback) return;
    const e = Buffer.alloc(6);
    e.writeUInt16BE(id, 0);
    e.writeUInt32BE(value >>> 0, 2);
    entries.push(e);
  };
  put(0x1, s.headerTableSize, 4096);
  put(0x2, s.enablePush === undefined ? undefined : s.enablePush ? 1 : 0, 1);
  put(0x3, s.maxConcurrentStreams, 2 ** 32 - 1);
  put(0x4, s.initialWindowSize, INITIAL_WINDOW);
  put(0x5, s.maxFrameSize, 16_384);
  put(0x6, s.maxHeaderListSize, 2 ** 32 - 1);
  return encodeFrame(FrameKind.SETTINGS, 0, 0, Buffer.concat(entries));
}

/**
 * What a fresh server session must read before the client's own bytes for it
 * to be where the client believes the connection is: the client connection
 * preface (magic + the client's settings, as the client once sent them), and
 * a connection WINDOW_UPDATE that brings the session's send window from the
 * initial 65 535 to what the client granted (`sendWindow`, ≥ 65 535).
 */
export function syntheticPreface(settings: ClientSettings, sendWindow: number): Buffer {
  const parts = [CLIENT_MAGIC, settingsFrame(settings)];
  if (sendWindow > INITIAL_WINDOW) {
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(sendWindow - INITIAL_WINDOW);
    parts.push(encodeFrame(FrameKind.WINDOW_UPDATE, 0, 0, increment));
  }
  return Buffer.concat(parts);
}

/** True for a connection-level WINDOW_UPDATE (stream 0). */
export function isConnectionWindowUpdate(h: FrameHeader): boolean {
  return h.type === FrameKind.WINDOW_UPDATE && h.stream === 0;
}

/** The sum of the connection-level WINDOW_UPDATE increments among `frames` of `data`. */
export function connectionWindowIncrements(data: Buffer, frames: readonly FrameHeader[]): number {
  let sum = 0;
  for (const h of frames) if (isConnectionWindowUpdate(h)) sum += data.readUInt32BE(h.at + FRAME_HEADER_BYTES) & 0x7fff_ffff;
  return sum;
}

/** True for a SETTINGS acknowledgement frame header. */
export function isSettingsAck(h: Pick<FrameHeader, 'type' | 'flags'>): boolean {
  return h.type === FrameKind.SETTINGS && (h.flags & FLAG_ACK) !== 0;
}
