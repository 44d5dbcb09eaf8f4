/**
 * What a master reads from other processes, decoded with a schema at this one
 * place before any code acts on it: a worker's IPC messages, the messages
 * between an old master and the new one it started, and the state file a
 * previous master left. Anything that does not fit is dropped (a message) or
 * ignored (the state file: the counters start from zero), never cast.
 *
 * Only masters load this module (zod costs a few hundred milliseconds to
 * load, which a worker's start must not pay): the worker's side of its link
 * decodes the master's few messages in supervisor/worker-link.ts.
 */
import { z } from 'zod';
import type { Phase } from '../core/phase.js';
import type { DrainByProtocol } from '../core/drain-counts.js';
import type { WorkerMessage } from './worker-link.js';

/** A worker's diagnostics event (observe/master-metrics.ts), named through the message so this module imports no metrics. */
type ObservedEvent = Extract<WorkerMessage, { type: 'observe' }>['observed'];

const PID_MAX = 4_194_304;
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = z.string().max(16 * 1024);
/** Drain counts by protocol (DrainByProtocol): a few short names. */
const byProtocol = z.record(z.string().max(32), z.object({ migrated: count, drained: count, forced: count }));
const phase = z.enum(['starting', 'taking-over', 'serving', 'handing-over', 'draining', 'exited', 'failed'] satisfies Phase[]);

const workerMessage = z.discriminatedUnion('type', [
  z.object({
    baton: z.literal('worker'),
    type: z.literal('phase'),
    phase,
    generation: count,
    origin: z.string().max(64),
    socketPath: z.string().max(4096),
  }),
  // The master reads the count and what degrades (baton status); the phase comes with it for a person reading the IPC.
  z.object({
    baton: z.literal('worker'),
    type: z.literal('status'),
    phase: phase.optional(),
    connections: count,
    requests: count.optional(),
    degraded: z
      .array(z.object({ internal: z.string().max(256), degrades: text }))
      .max(64)
      .optional(),
  }),
  z.object({
    baton: z.literal('worker'),
    type: z.literal('drained'),
    migrated: count,
    drained: count,
    forced: count,
    requests: count.optional(),
    byProtocol: byProtocol.optional(),
  }),
  z.object({ baton: z.literal('worker'), type: z.literal('listener'), name: z.string().min(1).max(256) }),
  z.object({ baton: z.literal('worker'), type: z.literal('ticket-keys') }),
  z.object({
    baton: z.literal('worker'),
    type: z.literal('listen-failed'),
    name: z.string().max(256),
    address: z.string().max(4096),
    code: z.string().max(64).optional(),
    message: text,
  }),
  // A diagnostics event of the worker, for the master's metrics: its channel checked here, its fields by the metrics.
  z.object({
    baton: z.literal('worker'),
    type: z.literal('observe'),
    observed: z.custom<ObservedEvent>((v) => {
      const o = v as { channel?: unknown; event?: unknown } | null;
      return (
        typeof o === 'object' &&
        o !== null &&
        (o.channel === 'phase' || o.channel === 'batch') &&
        typeof o.event === 'object' &&
        o.event !== null
      );
    }),
  }),
]) satisfies z.ZodType<WorkerMessage>;
// Every kind of message has its schema (`satisfies` above only checks that what is decoded is a WorkerMessage).
true satisfies Exclude<WorkerMessage['type'], z.output<typeof workerMessage>['type']> extends never ? true : never;

/** Messages between an old master and the new master it started (USR2). */
export type MasterLinkMessage =
  | { baton: 'new-master'; type: 'ready'; pid: number }
  | { baton: 'new-master'; type: 'resume' }
  /** The new master, before it starts a worker, asks for the old one's TLS session-ticket keys (config tlsTicketKeys). */
  | { baton: 'new-master'; type: 'ticket-keys-wanted' }
  /**
   * The answer: the old master's ticket keys, base64 by listener name (secrets: only ever on this
   * channel); none when the old master's config says tlsTicketKeys: false.
   */
  | { baton: 'old-master'; type: 'ticket-keys'; keys: Record<string, string> }
  | { baton: 'old-master'; type: 'resumed' }
  /** The old master is stopping (QUIT, TERM): it exits once its workers drained; the new master's USR2 says so meanwhile. */
  | { baton: 'old-master'; type: 'stopping' }
  /** A retired worker of the old master finished draining: its counts go on in the new master's counters. */
  | { baton: 'old-master'; type: 'drained'; migrated: number; drained: number; forced: number; byProtocol?: DrainByProtocol }
  | { baton: 'old-master'; type: 'absorb'; workers: { slot: number; socketPath: string }[] };

const masterLinkMessage = z.discriminatedUnion('type', [
  z.object({ baton: z.literal('new-master'), type: z.literal('ready'), pid: z.number().int().min(1).max(PID_MAX) }),
  z.object({ baton: z.literal('new-master'), type: z.literal('resume') }),
  z.object({ baton: z.literal('new-master'), type: z.literal('ticket-keys-wanted') }),
  z.object({
    baton: z.literal('old-master'),
    type: z.literal('ticket-keys'),
    // 48 bytes of key in base64 (TICKET_KEY_BYTES) per listener name, a few names.
    keys: z.record(z.string().min(1).max(256), z.string().regex(/^[A-Za-z0-9+/]{64}$/)).refine((k) => Object.keys(k).length <= 4096),
  }),
  z.object({ baton: z.literal('old-master'), type: z.literal('resumed') }),
  z.object({ baton: z.literal('old-master'), type: z.literal('stopping') }),
  z.object({
    baton: z.literal('old-master'),
    type: z.literal('drained'),
    migrated: count,
    drained: count,
    forced: count,
    byProtocol: byProtocol.optional(),
  }),
  z.object({
    baton: z.literal('old-master'),
    type: z.literal('absorb'),
    workers: z.array(z.object({ slot: z.number().int().min(0).max(4096), socketPath: z.string().max(4096) })).max(4096),
  }),
]) satisfies z.ZodType<MasterLinkMessage>;
true satisfies Exclude<MasterLinkMessage['type'], z.output<typeof masterLinkMessage>['type']> extends never ? true : never;

// Each counter on its own: one missing or out of range (an older or damaged file) starts from zero, the others carry on.
const stateFile = z.object({ version: z.literal(1), counters: z.record(z.string().max(64), z.unknown()) });

/** A worker's IPC message, or undefined for anything else (another module's message, a malformed one). */
export function decodeWorkerMessage(m: unknown): WorkerMessage | undefined {
  const r = workerMessage.safeParse(m);
  return r.success ? r.data : undefined;
}

/** A message of the other master (old or new), or undefined for anything else. */
export function decodeMasterLinkMessage(m: unknown): MasterLinkMessage | undefined {
  const r = masterLinkMessage.safeParse(m);
  return r.success ? r.data : undefined;
}

/**
 * The counters of a state file's text (version 1) among `names`, each a
 * non-negative count or else left out; undefined when the text is not such
 * a file.
 */
export function decodeStateFileCounters<K extends string>(json: string, names: readonly K[]): Partial<Record<K, number>> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  const r = stateFile.safeParse(value);
  if (!r.success) return undefined;
  const out: Partial<Record<K, number>> = {};
  for (const name of names) {
    const v = count.safeParse(r.data.counters[name]);
    if (v.success) out[name] = v.data;
  }
  return out;
}

/** A state file's drain counts by protocol (DrainByProtocol); none when absent or malformed (an older or damaged file). */
export function decodeStateFileByProtocol(json: string): DrainByProtocol {
  try {
    const r = z.object({ byProtocol: byProtocol.refine((v) => Object.keys(v).length <= 16) }).safeParse(JSON.parse(json));
    return r.success ? r.data.byProtocol : {};
  } catch {
    return {};
  }
}
