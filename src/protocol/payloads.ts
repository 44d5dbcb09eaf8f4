/**
 * The schemas of every frame's payload, in one place: a frame whose payload
 * does not fit is refused with ERR_BATON_BAD_FRAME naming the frame type and
 * the field, before any code acts on it. The JSON fields are the wire format
 * of protocol version 1 (see frames.ts); unknown fields are dropped, so a
 * later minor addition does not break an older peer.
 *
 * Ranges are those a real peer can produce: a pid is a positive int below
 * Linux's largest pid_max, counts are non-negative safe integers, strings are
 * bounded. An Error frame's code has the shape of a baton code, so nothing
 * like `__proto__` or `constructor` ever becomes an error code.
 */
import { createRequire } from 'node:module';
import type { ZodType } from 'zod';
import { BatonError } from '../core/errors.js';
import {
  FrameType,
  PROTOCOL_VERSION,
  frameTypeName,
  type DecodedFrame,
  type Frame,
  type FramePayloads,
  type MigratedConnection,
} from './frames.js';

/** Linux's largest possible pid_max (PID_MAX_LIMIT, 2^22). */
const PID_MAX = 4_194_304;
/** Longest server or listener name, address, or refusal reason carried. */
const NAME_MAX = 256;
const TEXT_MAX = 16 * 1024;

/**
 * The schema of each frame type's payload. zod is loaded (synchronously) on
 * the first check rather than with this module: a generation that starts
 * fresh does not pay for it on its start (it loads them a second after it
 * serves, off its first upgrade's path: Generation.ready()), and a successor
 * sends its Hello before it does.
 */
export function payloadSchemas(): PayloadSchemas {
  schemas ??= buildSchemas(createRequire(import.meta.url)('zod') as typeof import('zod'));
  return schemas;
}

/** One schema per frame type, each decoding to that type's payload (frames.ts FramePayloads): checked when this compiles. */
type PayloadSchemas = { [K in FrameType]: ZodType<FramePayloads[K]> };

let schemas: PayloadSchemas | undefined;

function buildSchemas({ z }: typeof import('zod')): PayloadSchemas {
  const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
  const id = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

  /** Hello, both ways. `connections` only from a predecessor. */
  const helloSchema = z.object({
    protocol: z.number().int(),
    pid: z.number().int().min(1).max(PID_MAX),
    generation: count,
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a server name is 1–64 letters, digits, ".", "_" or "-"'),
    node: z.string().max(64),
    // Optional protocol features (frames.ts): a few short names.
    features: z.array(z.string().max(64)).max(64).optional(),
    // Successor only: data consistency mode, and the app it runs (an absolute path: PATH_MAX).
    consistency: z.boolean().optional(),
    app: z.string().max(4096).optional(),
    namedOnPurpose: z.boolean().optional(),
    // Predecessor only: older generations still alive (handover/lineage.ts, LINEAGE_MAX).
    lineage: z
      .array(z.object({ pid: z.number().int().min(1).max(PID_MAX), generation: count, start: z.string().regex(/^[0-9]{1,20}$/) }))
      .max(64)
      .optional(),
    // More than any fd table can hold: a predecessor announcing it lies.
    connections: z
      .number()
      .int()
      .min(0)
      .max(1 << 30)
      .optional(),
  });

  const listenerEntry = z.object({
    name: z.string().min(1).max(NAME_MAX),
    kind: z.enum(['tcp', 'unix', 'udp4', 'udp6']),
    address: z.string().max(4096),
    port: z.number().int().min(0).max(65535).optional(),
    inheritedFd: z.number().int().min(0).max(0x7fffffff).optional(),
    // Feature tls-ticket-keys: 48 bytes of session-ticket keys, base64 (64 characters).
    ticketKeys: z.base64().length(64).optional(),
  });

  const listenersSchema = z.object({ listeners: z.array(listenerEntry).max(4096) });

  const stateSchema = z.object({ present: z.boolean(), value: z.unknown().optional() });

  const readySchema = z.object({ listeners: count });

  const drainingSchema = z.object({ connections: count });

  const doneSchema = z.object({
    drained: count,
    migrated: count,
    forced: count,
    durationMs: z.number().min(0).max(Number.MAX_SAFE_INTEGER),
  });

  const errorSchema = z.object({
    code: z.string().regex(/^ERR_[A-Z0-9_]{1,60}$/, 'an error code is ERR_ followed by capitals, digits or "_"'),
    message: z.string().max(TEXT_MAX),
  });

  // The two frames of a migration carry one entry per connection — 10k connections are about
  // ten frames of 1024 entries — and a successor decodes each while the predecessor waits for
  // its acknowledgement. A zod object per entry cost a fresh successor 70 ms on its first
  // frame (compiling and warming the schema) and ~1 µs per entry after, a good part of a
  // migration's time; the entries are checked by one loop each instead (`entriesIssue`,
  // `idsIssue`), with the same rules and messages naming the entry and field.
  const connectionsSchema = z.object({
    batch: count,
    connections: z.custom<MigratedConnection[]>().superRefine((entries, ctx) => {
      const issue = entriesIssue(entries);
      if (issue) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    }),
  });

  const connectionsAckSchema = z.object({
    batch: count,
    adopted: z.custom<number[]>().superRefine((ids, ctx) => {
      const issue = idsIssue(ids);
      if (issue) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    }),
    refused: z.array(z.object({ id, reason: z.string().max(TEXT_MAX) })),
  });

  /** Ping and Pong: the Pong echoes its Ping's number. */
  const pingSchema = z.object({ seq: count });

  /** LateState: a key such as `socket.io` and its JSON value. */
  const lateStateSchema = z.object({ key: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/), value: z.unknown() });

  return {
    [FrameType.Hello]: helloSchema,
    [FrameType.Listeners]: listenersSchema,
    [FrameType.State]: stateSchema,
    [FrameType.Ready]: readySchema,
    [FrameType.Draining]: drainingSchema,
    [FrameType.Done]: doneSchema,
    [FrameType.Error]: errorSchema,
    [FrameType.Connections]: connectionsSchema,
    [FrameType.ConnectionsAck]: connectionsAckSchema,
    [FrameType.Ping]: pingSchema,
    [FrameType.Pong]: pingSchema,
    [FrameType.LateState]: lateStateSchema,
  } satisfies PayloadSchemas;
}

/** What is wrong with a field of a payload: its path below the payload's field, and why. */
interface Issue {
  path: (string | number)[];
  message: string;
}

/** Most entries in one Connections frame (far more than any batch). */
const ENTRIES_MAX = 1 << 20;
/** A migration kind's name (src/migrate/kinds.ts is the one list): a kind this build does not know is refused for its entry, not for the whole frame. */
const KIND_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The first wrong entry of a Connections frame's `connections` (see connectionsSchema), or undefined. */
function entriesIssue(entries: unknown): Issue | undefined {
  if (!Array.isArray(entries)) return { path: [], message: 'expected an array of connections' };
  if (entries.length > ENTRIES_MAX) return { path: [], message: `more than ${ENTRIES_MAX} connections` };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Partial<Record<keyof MigratedConnection, unknown>> | null;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return { path: [i], message: 'expected an object' };
    if (!isId(e.id)) return { path: [i, 'id'], message: 'expected a non-negative integer' };
    const listener = e.listener;
    if (typeof listener !== 'string' || listener.length < 1 || listener.length > NAME_MAX)
      return { path: [i, 'listener'], message: `expected a name of 1–${NAME_MAX} characters` };
    if (typeof e.kind !== 'string' || !KIND_NAME.test(e.kind))
      return { path: [i, 'kind'], message: 'a migration kind is a short lower-case name' };
    if (e.head !== undefined && (typeof e.head !== 'string' || !BASE64.test(e.head)))
      return { path: [i, 'head'], message: 'expected base64' };
  }
  return undefined;
}

/** The first wrong id of a ConnectionsAck frame's `adopted`, or undefined. */
function idsIssue(ids: unknown): Issue | undefined {
  if (!Array.isArray(ids)) return { path: [], message: 'expected an array of connection ids' };
  for (let i = 0; i < ids.length; i++) if (!isId(ids[i])) return { path: [i], message: 'expected a non-negative integer' };
  return undefined;
}

/**
 * Checks `frame`'s payload against its type's schema and the fds it carries
 * against what the payload names: a Listeners frame carries one fd per
 * listener (takeover) or none (exec: the fds were inherited), a Connections
 * frame one per connection. Returns the frame with the parsed payload.
 * Throws ERR_BATON_BAD_FRAME naming `from`, the frame type and the field, or
 * ERR_BATON_PROTOCOL_VERSION for a Hello of another protocol version; the
 * caller then owns (and closes) the frame's fds.
 */
export function checkPayload(frame: Frame, from: string): DecodedFrame {
  const type = frameTypeName(frame.type);
  if (frame.type === FrameType.Hello) {
    // The version first: a peer of another version may send other fields.
    const protocol = (frame.payload as { protocol?: unknown } | null)?.protocol;
    if (typeof protocol === 'number' && protocol !== PROTOCOL_VERSION) {
      throw new BatonError(
        'ERR_BATON_PROTOCOL_VERSION',
        `${from} speaks handover protocol ${protocol}; this build speaks ${PROTOCOL_VERSION}`,
      );
    }
  }
  const result = payloadSchemas()[frame.type].safeParse(frame.payload);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.length > 0 ? issue.path.join('.') : '(payload)';
    throw new BatonError(
      'ERR_BATON_BAD_FRAME',
      `${from} sent ${article(type)} ${type} frame with a bad payload: ${field}: ${issue.message}`,
    );
  }
  const decoded = { ...frame, payload: result.data } as DecodedFrame;
  const carried =
    decoded.type === FrameType.Listeners
      ? decoded.payload.listeners.length
      : decoded.type === FrameType.Connections
        ? decoded.payload.connections.length
        : 0;
  const allowed = frame.type === FrameType.Listeners ? [0, carried] : [carried];
  if (!allowed.includes(frame.fds.length)) {
    throw new BatonError(
      'ERR_BATON_BAD_FRAME',
      `${from} sent ${article(type)} ${type} frame naming ${carried} ${frame.type === FrameType.Listeners ? 'listeners' : 'connections'} with ${frame.fds.length} fds`,
    );
  }
  return decoded;
}

function article(word: string): string {
  return /^[AEIOU]/.test(word) ? 'an' : 'a';
}
