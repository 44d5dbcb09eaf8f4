/**
 * The worker side of the supervisor: how a generation started by `baton start`
 * finds its place (its slot's upgrade socket directory) and talks to its master
 * over Node's IPC channel.
 *
 * Master → worker: `{ baton: 'master', type: 'stop', drainMs }` (stop
 * accepting and drain for at most `drainMs`), `{ baton: 'master', type: 'status' }`,
 * `{ baton: 'master', type: 'absorb', socketPath }` (take the live connections of
 * the generation at that upgrade socket: an old master's retiring worker).
 * Worker → master: `{ baton: 'worker', type: 'phase', phase, generation, origin }` on
 * every phase change, `{ baton: 'worker', type: 'status', phase, connections, requests, degraded }`,
 * `{ baton: 'worker', type: 'drained', migrated, drained, forced, requests, byProtocol }` once its drain ended
 * (`requests`: its generation's request count, final there),
 * `{ baton: 'worker', type: 'observe', observed }` for each of its diagnostics events, only when the
 * master asked for them (Supervision `observe`: it serves metrics).
 */
import type { DrainByProtocol } from '../core/drain-counts.js';
import type { Generation } from '../generation.js';
import type { Host } from '../host.js';
import type { Phase } from '../core/phase.js';
import type { MissingInternal } from '../native/internals.js';
import { forwardObservations } from '../observe/worker-forward.js';
import type { ObservedEvent } from '../observe/master-metrics.js';

/** Environment variable the master sets for its workers (JSON of {@link Supervision}). */
export const SUPERVISED_ENV = 'BATON_SUPERVISED';

/** What a worker learns from its master at spawn. */
export interface Supervision {
  /** The worker's slot, 0 … workers-1: a reloaded worker takes over the slot's previous one. */
  slot: number;
  /** The slot's upgrade socket directory (private, inside the master's run directory). */
  socketDir: string;
  masterPid: number;
  /** The config's `timeouts.drainMs`: the worker's drains (after a takeover, or on stop) last at most this long. */
  drainMs?: number;
  /** The config's `timeouts.livenessMs`: a successor worker that stops answering Pings this long after its ready is killed (StartOptions.livenessTimeoutMs). */
  livenessMs?: number;
  /** Config `maxGenerations` (StartOptions.maxGenerations). */
  maxGenerations?: number;
  /** The master serves metrics (config `metrics`): forward the diagnostics events. Otherwise nothing is subscribed nor sent. */
  observe?: boolean;
  /**
   * Config `tlsTicketKeys`: true, the master hands out TLS session-ticket keys and the worker asks
   * for them before it serves ({@link masterTicketKeys}); false, no keys travel at all (not even in
   * a reload's takeover). Absent (an older master): the worker's own setting.
   */
  ticketKeys?: boolean;
}

/** A message from a worker to its master. */
export type WorkerMessage =
  | { baton: 'worker'; type: 'phase'; phase: Phase; generation: number; origin: string; socketPath: string }
  /** `degraded`: the internals of Node or ws the worker lacks, each with what degrades (Generation#degraded). */
  | { baton: 'worker'; type: 'status'; phase?: Phase; connections: number; requests?: number; degraded?: MissingInternal[] }
  | { baton: 'worker'; type: 'drained'; migrated: number; drained: number; forced: number; requests?: number; byProtocol?: DrainByProtocol }
  /** One of the worker's diagnostics events (phase, migration batch), for the master's metrics. */
  | { baton: 'worker'; type: 'observe'; observed: ObservedEvent }
  /** A listener the worker bound itself (zero-code, not configured), sent with its net.Server handle. */
  | { baton: 'worker'; type: 'listener'; name: string }
  /** A listen() of the app failed (e.g. EADDRINUSE for a listener the master does not hold); `address` is printable. */
  | { baton: 'worker'; type: 'listen-failed'; name: string; address: string; code?: string; message: string }
  /** Asks for the master's TLS session-ticket keys (answered with a 'ticket-keys' message). */
  | { baton: 'worker'; type: 'ticket-keys' };

/** A message from the master to a worker. */
export type MasterMessage =
  | { baton: 'master'; type: 'stop'; drainMs: number }
  | { baton: 'master'; type: 'status' }
  | { baton: 'master'; type: 'absorb'; socketPath: string }
  /** The master's TLS session-ticket keys, base64 by listener name (secrets: only ever on this channel). */
  | { baton: 'master'; type: 'ticket-keys'; keys: Record<string, string> };

/** The optional fields of {@link Supervision}: all durations in ms. */
const OPTIONAL_DURATIONS = ['drainMs', 'livenessMs'] as const satisfies readonly (keyof Supervision)[];

/** The supervision this process runs under, if any; the variable is removed so the app's children do not see it. */
export function takeSupervision(env: NodeJS.ProcessEnv): Supervision | undefined {
  const raw = env[SUPERVISED_ENV];
  if (raw === undefined) return undefined;
  delete env[SUPERVISED_ENV];
  let s: Partial<Record<keyof Supervision, unknown>> | null;
  try {
    s = JSON.parse(raw) as typeof s;
  } catch {
    return undefined;
  }
  if (!s || !isCount(s.slot) || typeof s.socketDir !== 'string' || !isCount(s.masterPid)) return undefined;
  const supervision: Supervision = { slot: s.slot, socketDir: s.socketDir, masterPid: s.masterPid };
  // Every optional field is a duration: checked in one loop, so a field added to Supervision is not dropped here.
  for (const key of OPTIONAL_DURATIONS) {
    const value = s[key];
    if (value === undefined) continue;
    if (!isDuration(value)) return undefined;
    supervision[key] = value;
  }
  if (isCount(s.maxGenerations) && s.maxGenerations >= 2) supervision.maxGenerations = s.maxGenerations;
  if (s.observe === true) supervision.observe = true;
  if (typeof s.ticketKeys === 'boolean') supervision.ticketKeys = s.ticketKeys;
  return supervision;
}

/**
 * A master's IPC message, or undefined for anything else (the app's own
 * messages, a malformed one). Checked by hand, not with a schema like the
 * master's side (wire.ts): a worker does not load zod for three small messages.
 */
export function decodeMasterMessage(m: unknown): MasterMessage | undefined {
  const o = m as Partial<Record<string, unknown>> | null;
  if (typeof o !== 'object' || o === null || o.baton !== 'master') return undefined;
  if (o.type === 'status') return { baton: 'master', type: 'status' };
  if (o.type === 'stop' && isDuration(o.drainMs)) return { baton: 'master', type: 'stop', drainMs: o.drainMs };
  if (o.type === 'absorb' && typeof o.socketPath === 'string') return { baton: 'master', type: 'absorb', socketPath: o.socketPath };
  if (o.type === 'ticket-keys' && typeof o.keys === 'object' && o.keys !== null) {
    const keys = Object.entries(o.keys as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string');
    return { baton: 'master', type: 'ticket-keys', keys: Object.fromEntries(keys) };
  }
  return undefined;
}

/**
 * Asks the master for its TLS session-ticket keys over the IPC channel and
 * resolves with them by listener name (start() sets them on the worker's TLS
 * servers: every worker of a master shares them, and so does every worker of
 * a reload). No answer within `timeoutMs`, or no channel: an empty map (the
 * worker's servers keep keys of their own).
 */
export function masterTicketKeys(timeoutMs: number): Promise<Map<string, string>> {
  if (!process.send || !process.connected) return Promise.resolve(new Map());
  return new Promise((resolve) => {
    const done = (keys: Map<string, string>) => {
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(keys);
    };
    const onMessage = (raw: unknown) => {
      const m = decodeMasterMessage(raw);
      if (m?.type === 'ticket-keys') done(new Map(Object.entries(m.keys)));
    };
    const timer = setTimeout(() => done(new Map()), timeoutMs);
    process.on('message', onMessage);
    process.send!({ baton: 'worker', type: 'ticket-keys' } satisfies WorkerMessage, undefined, {}, () => undefined);
  });
}

function isDuration(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * The worker's host (host.ts): its master, as `supervision` describes it. The
 * master holds the listeners (named LISTEN_FDS), the pid file and the upgrade
 * signal; the worker's upgrade socket lives in its slot's directory. Each
 * generation started in this process is linked to the master
 * ({@link linkToMaster}); a listener the app bound itself is handed to the
 * master (a copy of its handle over IPC), so the other workers and the next
 * master accept on the same socket instead of failing with EADDRINUSE.
 */
export function supervisorHost(supervision: Supervision): Host {
  return {
    name: `supervisor master ${supervision.masterPid}`,
    settings: {
      socketDir: supervision.socketDir,
      drainTimeoutMs: supervision.drainMs,
      livenessTimeoutMs: supervision.livenessMs,
      tlsTicketKeys: supervision.ticketKeys,
      maxGenerations: supervision.maxGenerations,
    },
    attach: (generation) => linkToMaster(generation, { observe: supervision.observe === true }),
    // The master's TLS session-ticket keys, over IPC (config tlsTicketKeys).
    ...(supervision.ticketKeys === true ? { ticketKeys: masterTicketKeys } : {}),
    listenerBound: (name, server) => {
      if (process.send && process.connected)
        process.send({ baton: 'worker', type: 'listener', name } satisfies WorkerMessage, server, {}, () => undefined);
    },
  };
}

/**
 * Reports `generation`'s phases to the master and obeys its stop requests.
 * When the master goes away (its IPC channel closes) the worker stops
 * gracefully: an orphaned worker would hold the listeners forever. The IPC
 * channel never keeps the worker alive by itself.
 */
function linkToMaster(generation: Generation, options: { observe: boolean }): void {
  const send = (m: WorkerMessage) => {
    if (process.connected) process.send?.(m, undefined, {}, () => undefined);
  };
  if (!process.send) return;
  // Only a master that serves metrics reads them: otherwise no subscriber, so the channels stay free.
  if (options.observe) forwardObservations((observed) => send({ baton: 'worker', type: 'observe', observed }));
  const phase = (p: Phase) =>
    send({
      baton: 'worker',
      type: 'phase',
      phase: p,
      generation: generation.number,
      origin: generation.origin,
      socketPath: generation.settings.socketPath,
    });
  generation.on('drained', (r) =>
    send({
      baton: 'worker',
      type: 'drained',
      migrated: r.migrated,
      drained: r.drained,
      forced: r.forced,
      requests: generation.requests,
      byProtocol: r.byProtocol,
    }),
  );
  generation.on('phase', phase);
  generation.on('listen-failed', ({ name, address, error }) =>
    send({
      baton: 'worker',
      type: 'listen-failed',
      name,
      address:
        'type' in address
          ? `${address.type} ${address.address ?? 'any'}:${address.port ?? 0}`
          : 'path' in address
            ? address.path
            : `${address.host ?? '0.0.0.0'}:${address.port}`,
      code: (error as NodeJS.ErrnoException).code,
      message: error.message,
    }),
  );
  phase(generation.phase);
  const stop = (drainMs?: number) => {
    generation.stop(drainMs === undefined ? {} : { drainTimeoutMs: drainMs }).catch(() => undefined);
  };
  process.on('message', (raw: unknown) => {
    const m = decodeMasterMessage(raw);
    if (!m) return;
    if (m.type === 'stop') stop(m.drainMs);
    else if (m.type === 'status')
      send({
        baton: 'worker',
        type: 'status',
        phase: generation.phase,
        connections: generation.connections,
        requests: generation.requests,
        degraded: [...generation.degraded],
      });
    // A retiring worker of an old master hands its live connections to this one.
    else if (m.type === 'absorb') generation.absorb(m.socketPath).catch(() => undefined);
  });
  process.on('disconnect', () => {
    if (generation.phase === 'serving') stop();
  });
  process.channel?.unref();
}
