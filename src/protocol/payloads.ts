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
import * as v from 'valibot';
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
/** Longest validation message quoted in an error (it names the value received). */
const MESSAGE_MAX = 200;

/** One schema per frame type, each decoding to that type's payload (frames.ts FramePayloads): checked when this compiles. */
type PayloadSchemas = { [K in FrameType]: v.GenericSchema<unknown, FramePayloads[K]> };

function buildSchemas(): PayloadSchemas {
  const int = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));
  const count = int(0, Number.MAX_SAFE_INTEGER);
  const pid = int(1, PID_MAX);
  const text = (max: number) => v.pipe(v.string(), v.maxLength(max));
  const NAME = /^[A-Za-z0-9._-]{1,64}$/;

  /** Hello, both ways. `connections` only from a predecessor. */
  const helloSchema = v.object({
    protocol: v.pipe(v.number(), v.integer()),
    pid,
    generation: count,
    name: v.pipe(v.string(), v.regex(NAME, 'a server name is 1–64 letters, digits, ".", "_" or "-"')),
    node: text(64),
    // Optional protocol features (frames.ts): a few short names.
    features: v.optional(v.pipe(v.array(text(64)), v.maxLength(64))),
    // Successor only: data consistency mode, and the app it runs (an absolute path: PATH_MAX).
    consistency: v.optional(v.boolean()),
    app: v.optional(text(4096)),
    namedOnPurpose: v.optional(v.boolean()),
    // Predecessor only: older generations still alive (handover/lineage.ts, LINEAGE_MAX).
    lineage: v.optional(
      v.pipe(v.array(v.object({ pid, generation: count, start: v.pipe(v.string(), v.regex(/^[0-9]{1,20}$/)) })), v.maxLength(64)),
    ),
    // More than any fd table can hold: a predecessor announcing it lies.
    connections: v.optional(int(0, 1 << 30)),
  });

  const listenerEntry = v.object({
    name: v.pipe(v.string(), v.minLength(1), v.maxLength(NAME_MAX)),
    kind: v.picklist(['tcp', 'unix', 'udp4', 'udp6']),
    address: text(4096),
    port: v.optional(int(0, 65535)),
    inheritedFd: v.optional(int(0, 0x7fffffff)),
    // Feature tls-ticket-keys: 48 bytes of session-ticket keys, base64 (64 characters).
    ticketKeys: v.optional(v.pipe(v.string(), v.length(64), v.regex(BASE64, 'expected base64'))),
  });

  const listenersSchema = v.object({ listeners: v.pipe(v.array(listenerEntry), v.maxLength(4096)) });

  const stateSchema = v.object({ present: v.boolean(), value: v.optional(v.unknown()) });

  const readySchema = v.object({ listeners: count });

  const drainingSchema = v.object({ connections: count });

  const doneSchema = v.object({
    drained: count,
    migrated: count,
    forced: count,
    durationMs: v.pipe(v.number(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)),
  });

  const errorSchema = v.object({
    code: v.pipe(v.string(), v.regex(/^ERR_[A-Z0-9_]{1,60}$/, 'an error code is ERR_ followed by capitals, digits or "_"')),
    message: text(TEXT_MAX),
  });

  // The two frames of a migration carry one entry per connection — 10k connections are about
  // ten frames of 1024 entries — and a successor decodes each while the predecessor waits for
  // its acknowledgement. A schema object per entry cost a fresh successor 70 ms on its first
  // frame (zod: compiling and warming the schema) and ~1 µs per entry after, a good part of a
  // migration's time; the entries are checked by one loop each instead (`entriesIssue`,
  // `idsIssue`, run by checkPayload once the frame's shape passed), with the same rules and
  // messages naming the entry and field.
  const connectionsSchema = v.object({
    batch: count,
    connections: v.custom<FramePayloads[typeof FrameType.Connections]['connections']>(() => true),
  });

  const connectionsAckSchema = v.object({
    batch: count,
    adopted: v.custom<number[]>(() => true),
    refused: v.array(v.object({ id: count, reason: text(TEXT_MAX) })),
  });

  /** Ping and Pong: the Pong echoes its Ping's number. */
  const pingSchema = v.object({ seq: count });

  /** LateState: a key such as `socket.io` and its JSON value. */
  const lateStateSchema = v.object({ key: v.pipe(v.string(), v.regex(NAME)), value: v.unknown() });

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

/** What is wrong with a field of a payload: its path from the payload, and why. */
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
  if (!Array.isArray(entries)) return { path: ['connections'], message: 'expected an array of connections' };
  if (entries.length > ENTRIES_MAX) return { path: ['connections'], message: `more than ${ENTRIES_MAX} connections` };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Partial<Record<keyof MigratedConnection, unknown>> | null;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return { path: ['connections', i], message: 'expected an object' };
    if (!isId(e.id)) return { path: ['connections', i, 'id'], message: 'expected a non-negative integer' };
    const listener = e.listener;
    if (typeof listener !== 'string' || listener.length < 1 || listener.length > NAME_MAX)
      return { path: ['connections', i, 'listener'], message: `expected a name of 1–${NAME_MAX} characters` };
    if (typeof e.kind !== 'string' || !KIND_NAME.test(e.kind))
      return { path: ['connections', i, 'kind'], message: 'a migration kind is a short lower-case name' };
    if (e.head !== undefined && (typeof e.head !== 'string' || !BASE64.test(e.head)))
      return { path: ['connections', i, 'head'], message: 'expected base64' };
  }
  return undefined;
}

/** The first wrong id of a ConnectionsAck frame's `adopted`, or undefined. */
function idsIssue(ids: unknown): Issue | undefined {
  if (!Array.isArray(ids)) return { path: ['adopted'], message: 'expected an array of connection ids' };
  for (let i = 0; i < ids.length; i++) if (!isId(ids[i])) return { path: ['adopted', i], message: 'expected a non-negative integer' };
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
  const bad = (field: string, message: string): never => {
    throw new BatonError('ERR_BATON_BAD_FRAME', `${from} sent ${article(type)} ${type} frame with a bad payload: ${field}: ${message}`);
  };
  // valibot's object() takes an array for an object (its keys are then missing): a payload is a plain object.
  if (typeof frame.payload !== 'object' || frame.payload === null || Array.isArray(frame.payload)) bad('(payload)', 'expected an object');
  const result = v.safeParse(schemas[frame.type], frame.payload);
  if (!result.success) {
    const issue = result.issues[0];
    // The message quotes the value received, which can be megabytes long.
    const message = issue.message.length > MESSAGE_MAX ? `${issue.message.slice(0, MESSAGE_MAX)}…` : issue.message;
    bad(v.getDotPath(issue) ?? '(payload)', message);
  }
  const payload = result.output as FramePayloads[FrameType];
  // The per-connection entries, by one loop each (see connectionsSchema).
  const issue =
    frame.type === FrameType.Connections
      ? entriesIssue((payload as FramePayloads[typeof FrameType.Connections]).connections)
      : frame.type === FrameType.ConnectionsAck
        ? idsIssue((payload as FramePayloads[typeof FrameType.ConnectionsAck]).adopted)
        : undefined;
  if (issue) bad(issue.path.join('.'), issue.message);
  const decoded = { ...frame, payload } as DecodedFrame;
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

/**
 * The schema of each frame type's payload (valibot), built when this module
 * loads. valibot rather than zod: every successor checks its predecessor's
 * Hello on the upgrade's path, and zod 4 loads its ~40 locales with it (~45 ms
 * on a quiet 2-core machine, most of a successor's start()); valibot loads in
 * ~5 ms. Loaded with the module, never on demand: a require when a Hello comes
 * can meet a process out of fds (EMFILE) and fail that upgrade.
 *
 * Last in this file: buildSchemas reads the constants above.
 */
const schemas = buildSchemas();
