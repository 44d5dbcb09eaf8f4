/**
 * The host context: what a generation needs from whoever hosts its process,
 * so the library (start.ts, generation.ts, index.ts) never imports the hosts.
 * A host registers itself before the app runs; start() consults it.
 *
 * - A supervisor worker (`baton start`): the worker's preload
 *   (supervisor/worker-preload.ts) registers the link to its master
 *   (supervisor/worker-link.ts), which owns the listeners, the pid file and the
 *   upgrade signal, and hears every phase of the generation.
 * - Zero-code adoption (`baton run`, and a supervisor worker's app): the
 *   preload (adopt/register.ts) registers how the app declares its adopted
 *   generation ready ({@link adoptedReady}).
 * - The plain library: nothing is registered; start() goes by its options.
 *
 * The registrations are process-wide (core/process-global.ts): the preload
 * comes from baton's install that runs the app, `import 'baton'` from the
 * app's own dependency — two copies of this module, one host.
 */
import type dgram from 'node:dgram';
import type net from 'node:net';
import { BatonError } from './core/errors.js';
import { processGlobal } from './core/process-global.js';
import type { Generation } from './generation.js';

/** What a host imposes on start() (over the app's StartOptions). */
export interface HostSettings {
  /** Directory of the generation's upgrade socket (a supervisor worker's: its slot's). */
  socketDir: string;
  /** The host's drain limit (StartOptions.drainTimeoutMs), if it sets one. */
  drainTimeoutMs?: number;
  /** The host's liveness limit (StartOptions.livenessTimeoutMs), if it sets one. */
  livenessTimeoutMs?: number;
  /** The host's TLS session-ticket key setting (StartOptions.tlsTicketKeys), if it sets one. */
  tlsTicketKeys?: boolean;
  /** The host's bound of generations alive (StartOptions.maxGenerations), if it sets one. */
  maxGenerations?: number;
}

/**
 * A host that holds the process's listeners (handed in as named LISTEN_FDS,
 * preferred over a predecessor's copies), its pid file and its upgrade
 * signal: a supervisor worker's master.
 */
export interface Host {
  /** Names the host in messages (e.g. `supervisor master 1234`). */
  readonly name: string;
  /** What the host imposes on start(); read once per start(). */
  readonly settings: HostSettings;
  /**
   * Called with each generation start() creates, before start() returns it
   * (the host follows its phases, and may stop it or make it absorb another).
   */
  attach(generation: Generation): void;
  /**
   * A listener the app bound itself (zero-code adoption, not one of the
   * host's): a listening server, or a bound UDP socket. The host may take a
   * copy of its handle; the server or socket stays the app's.
   */
  listenerBound?(name: string, server: net.Server | dgram.Socket): void;
  /**
   * The host's TLS session-ticket keys, base64 by listener name (a master's: the same for
   * every worker it runs), asked for once by start() before the generation serves; an empty
   * map when they did not come within `timeoutMs`. Secrets: only over the host's private channel.
   */
  ticketKeys?(timeoutMs: number): Promise<Map<string, string>>;
}

/** The process-wide registrations (one per process, whatever copy of baton asks). */
const slots = processGlobal('host.v1', () => ({
  host: undefined as Host | undefined,
  adoptedReady: undefined as (() => Promise<void>) | undefined,
}));

/** Registers the process's host; called by the host's preload before the app runs (once). */
export function registerHost(host: Host): void {
  if (slots.host) throw new BatonError('ERR_BATON_INVALID_PHASE', `a host is already registered in this process (${slots.host.name})`);
  slots.host = host;
}

/** The process's host, or undefined for the plain library. */
export function currentHost(): Host | undefined {
  return slots.host;
}

/** Registers how {@link adoptedReady} declares the adopted generation ready (zero-code adoption, once per process). */
export function registerAdoptedReady(ready: () => Promise<void>): void {
  slots.adoptedReady = ready;
}

/**
 * Zero-code adoption with `BATON_READY=explicit`: declares the app's adopted
 * generation ready (the predecessor stops accepting and drains). Resolves
 * once it is ready. Rejects with ERR_BATON_INVALID_PHASE when no listener was
 * adopted yet (or the process is not run by `baton run` / `baton start`).
 */
export async function adoptedReady(): Promise<void> {
  const ready = slots.adoptedReady;
  if (!ready) throw new BatonError('ERR_BATON_INVALID_PHASE', 'adoptedReady(): no adopted listener yet');
  return ready();
}
