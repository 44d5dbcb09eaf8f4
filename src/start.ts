import fs from 'node:fs';
import path from 'node:path';
import { BatonError, asError, isBatonError } from './core/errors.js';
import { Defaults } from './core/options.js';
import { ConnectionTracker } from './drain/connection-tracker.js';
import type { ExecCommand } from './handover/exec.js';
import { CHANNEL_FD_ENV, adoptInheritedFd, takeListenFds, type InheritedListener } from './handover/inherit.js';
import { defaultSocketDir, ensurePrivateDir } from './handover/upgrade-socket.js';
import { Generation } from './generation.js';
import type { GenerationSettings, Origin } from './handover/settings.js';
import { Lineage } from './handover/lineage.js';
import { SuccessorSide } from './handover/successor.js';
import { ListenerSet } from './listeners/listener-set.js';
import { UnixChannel, probeUnixSocket } from './native/unix-channel.js';
import { closeQuietly, dupFd } from './native/socket-info.js';
import { isPeerLoss } from './protocol/frame-peer.js';
import { receivedTicketKeys } from './listeners/ticket-keys.js';
import type { ListenersPayload } from './protocol/frames.js';
import { processGlobal } from './core/process-global.js';
import { currentHost } from './host.js';

/** Options of {@link start}. Every timeout is in milliseconds; defaults in {@link Defaults}. */
export interface StartOptions {
  /** The server's name: names its upgrade socket (`<socketDir>/<name>.sock`). Letters, digits, `.`, `_`, `-`. */
  name: string;
  /** Directory of upgrade sockets (created 0700; must be private). Default {@link defaultSocketDir}. */
  socketDir?: string;
  /** Supplies the app state handed to a successor (JSON-serialisable). */
  state?: () => unknown;
  helloTimeoutMs?: number;
  readyTimeoutMs?: number;
  drainTimeoutMs?: number;
  migrateTimeoutMs?: number;
  livenessTimeoutMs?: number;
  /** Most connections migrated per batch (one frame and one acknowledgement each). */
  migrateBatchSize?: number;
  /**
   * Move live connections to the successor instead of draining them (default
   * true): idle and finished HTTP/1.1 keep-alive connections of plain http
   * servers, and raw connections registered with Generation#migrateSockets.
   */
  migrate?: boolean;
  /**
   * With `migrate`, what happens to an HTTP/1.1 connection whose request is in
   * flight when the drain starts: true (default) moves it right after the
   * response; false answers it with `Connection: close`, so the client
   * reconnects to the successor.
   */
  migrateAfterResponse?: boolean;
  /**
   * Connections that cannot migrate and would hold the drain open: upgraded
   * ones (a WebSocket of a server not registered with
   * Generation#migrateWebSockets, one with permessage-deflate, any other
   * protocol after an HTTP `Upgrade`) and every connection of a TLS server
   * (HTTPS, wss, any protocol over TLS: TLS keys cannot leave the process).
   * true (default) closes them gracefully as soon as the successor is ready,
   * each at its boundary — a `ws` WebSocket with 1012 (Service Restart), an
   * idle HTTPS keep-alive connection once quiet for a second, a busy one after its response,
   * anything else with a FIN once its writes flushed — so their clients
   * reconnect to the successor at once; false holds them (idle HTTPS
   * keep-alive until the server's `keepAliveTimeout`, the others until
   * `drainTimeoutMs`, then destroyed). HTTP/2 sessions get their GOAWAY at
   * the start of the drain either way. Applies to a migrating drain
   * (`migrate`, the default). See docs/tls.md.
   */
  closeUpgraded?: boolean;
  /**
   * TLS session resumption across generations: true (default) hands each TLS
   * listener's session-ticket keys (`tls.Server#getTicketKeys`) to the
   * successor, which sets them on the server listening under the same name,
   * so clients reconnecting after an upgrade resume their sessions. false on
   * either side: nothing travels, the successor keeps its own keys (and under
   * `baton start`, config `tlsTicketKeys: false`, each worker keeps its own).
   * The keys go only over the upgrade socket or the master's IPC channel.
   */
  tlsTicketKeys?: boolean;
  killGraceMs?: number;
  /** How long a predecessor's UDP sockets stay open for replies after it stopped reading them (see Defaults.datagramLingerMs). */
  datagramLingerMs?: number;
  maxFrameBytes?: number;
  /** Largest frame a peer may send before its Hello (see Defaults.preAuthFrameBytes). */
  preAuthFrameBytes?: number;
  maxStateBytes?: number;
  /** Most generations alive at once, draining ones included (Defaults.maxGenerations; at least 2). */
  maxGenerations?: number;
  /** Signal that triggers the exec upgrade path; `null` installs no handler. Default SIGUSR2. */
  upgradeSignal?: NodeJS.Signals | null;
  /** Let root take over this server (default true). */
  allowRoot?: boolean;
  /** Further uids allowed to take over (the server's own uid always is). */
  allowedUids?: readonly number[];
  /** Pid file written (atomically) when this generation serves, removed when it exits if still its own. */
  pidFile?: string;
  /** What the exec path runs (default: this program, re-read from disk, with the Node binary at process.execPath). */
  exec?: ExecCommand;
  /** Environment to read inherited fds from (default process.env; the variables are removed once read). */
  env?: NodeJS.ProcessEnv;
  /**
   * In a successor, accept on inherited listeners as soon as listen() is
   * called instead of from ready() (default false). Zero-code adoption sets
   * it: an unmodified app waits for 'listening' before it goes on.
   */
  acceptBeforeReady?: boolean;
  /**
   * Data consistency mode, for apps whose state lives in process memory or in
   * files (default false). As a successor, start() resolves only once the
   * predecessor has stopped taking requests (connections wait in the kernel
   * and on their open connections, none is refused) and finished those in
   * flight — so the data this generation loads next is final; it then serves
   * nothing until this generation is ready. Requests are delayed by this
   * generation's start-up, never failed. See handover/quiesce.ts.
   */
  consistency?: boolean;
  /**
   * What app this process runs (zero-code adoption: the entry file's absolute
   * path). A predecessor running another app refuses this successor
   * (ERR_BATON_APP_MISMATCH) unless `namedOnPurpose`.
   */
  app?: string;
  /** The name was given by the user (not derived from the app): another app may take it over. */
  namedOnPurpose?: boolean;
}

/**
 * Whether start() was called in this process, by any copy of baton: the app's
 * own dependency and `baton run`'s preload are two copies (see
 * core/process-global.ts), and the preload must see the app's session.
 */
const session = processGlobal('session.v1', () => ({ started: false }));

/** True once start() was called in this process, by any copy of baton (zero-code adoption then stays out of the way). */
export function librarySessionStarted(): boolean {
  return session.started;
}

const namePattern = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Starts this process's generation. Finds out how it came to be, in order:
 * 1. `exec` — spawned by a predecessor's exec upgrade (BATON_CHANNEL_FD and
 *    LISTEN_FDS set): listeners inherited as fds, the rest over the channel;
 * 2. `takeover` — a predecessor answers on the upgrade socket: its listeners
 *    and state come over that socket;
 * 3. `systemd` — LISTEN_FDS for this pid (socket activation);
 * 4. `fresh` — nothing to inherit; listeners are bound.
 *
 * A predecessor keeps accepting until the returned generation's ready().
 * Rejects (closing every fd received) when the predecessor refuses, e.g.
 * ERR_BATON_UPGRADE_IN_PROGRESS when another successor won the race.
 */
export async function start(options: StartOptions): Promise<Generation> {
  session.started = true;
  const env = options.env ?? process.env;
  // A host (host.ts; under `baton start`, the worker's master) owns the listeners, the pid file and
  // the upgrade signal; the upgrade socket lives in the directory it names.
  const host = currentHost();
  const settings = resolveSettings(
    host
      ? {
          ...options,
          socketDir: host.settings.socketDir,
          pidFile: undefined,
          upgradeSignal: null,
          drainTimeoutMs: host.settings.drainTimeoutMs ?? options.drainTimeoutMs,
          livenessTimeoutMs: host.settings.livenessTimeoutMs ?? options.livenessTimeoutMs,
          // The host's setting decides (a master's tlsTicketKeys: false turns the handover's keys off too).
          tlsTicketKeys: host.settings.tlsTicketKeys ?? options.tlsTicketKeys,
          maxGenerations: host.settings.maxGenerations ?? options.maxGenerations,
        }
      : options,
  );
  ensurePrivateDir(path.dirname(settings.socketPath));

  let origin: Origin = 'fresh';
  let channel: UnixChannel | undefined;
  const channelFd = env[CHANNEL_FD_ENV];
  let pool: InheritedListener[] = [];
  if (channelFd !== undefined) {
    delete env[CHANNEL_FD_ENV];
    const fd = Number(channelFd);
    // A CLOEXEC copy: the app's own children must not inherit the channel.
    channel = UnixChannel.fromFd(dupFd(fd));
    closeQuietly(fd);
    origin = 'exec';
  }
  try {
    pool = takeListenFds(env);
  } catch (err) {
    channel?.close();
    throw err;
  }
  if (!channel) {
    let found = probeUnixSocket(settings.socketPath);
    // A predecessor whose backlog is full: wait for room (in the thread pool, not on this thread).
    if (found.kind === 'busy')
      found = { kind: 'running', channel: await UnixChannel.connectWait(settings.socketPath, settings.helloTimeoutMs) };
    if (found.kind === 'running') {
      channel = found.channel;
      origin = 'takeover';
    } else {
      if (found.kind === 'stale') fs.rmSync(settings.socketPath, { force: true });
      // A worker's LISTEN_FDS come from its master (the host), not from systemd.
      origin = pool.length > 0 ? (host ? 'supervisor' : 'systemd') : 'fresh';
    }
  }

  const tracker = new ConnectionTracker();
  // The host's listeners go by name, and win over a predecessor's copies of the same names.
  const supervised = host !== undefined;
  const linked = (g: Generation): Generation => {
    host?.attach(g);
    return g;
  };
  // Under `baton start` the master's TLS session-ticket keys (the same for every worker of it), asked for over IPC.
  const masterKeys =
    host?.ticketKeys && settings.tlsTicketKeys ? await host.ticketKeys(settings.helloTimeoutMs) : new Map<string, string>();
  if (!channel) {
    const listeners = new ListenerSet(pool, (s) => tracker.track(s), { byName: supervised, ticketKeys: masterKeys });
    return linked(
      new Generation(settings, {
        origin,
        number: 1,
        listeners,
        tracker,
        predecessor: undefined,
        predecessorPid: undefined,
        lineage: Lineage.none(),
        state: { present: false },
      }),
    );
  }

  const side = new SuccessorSide(channel, settings, `predecessor at ${settings.socketPath}`);
  // The predecessor's TLS session-ticket keys by listener name; a supervisor's win (one set for all its workers).
  let ticketKeys: Map<string, string> = masterKeys;
  try {
    const { reply, state } = await side.takeOver(0, (manifest, fds) => {
      if (settings.tlsTicketKeys) ticketKeys = new Map([...receivedTicketKeys(manifest.listeners), ...masterKeys]);
      const received = adoptManifest(manifest, fds, pool);
      // A supervised worker takes its listeners from the master (the config may
      // have changed them); the predecessor's copies of the same names go unclaimed.
      pool = supervised ? [...pool, ...received] : [...received, ...pool];
    });
    const listeners = new ListenerSet(pool, (s) => tracker.track(s), {
      deferInherited: options.acceptBeforeReady !== true,
      // Binding a UDP socket is what the app waits for; reading can wait for ready (its handlers are attached by then).
      deferDatagrams: true,
      byName: supervised,
      ticketKeys,
    });
    return linked(
      new Generation(settings, {
        origin,
        number: reply.generation + 1,
        listeners,
        tracker,
        predecessor: side,
        predecessorPid: reply.pid,
        lineage: Lineage.after(reply),
        state: { present: state.present, value: state.value },
      }),
    );
  } catch (err) {
    side.close();
    // A predecessor that stops answering once its listeners are here (frozen, then maybe killed)
    // is treated as gone too: this process holds the sockets, so it serves rather than nobody.
    // Should the predecessor resume, its State meets a closed channel and it serves on beside us.
    if (isPeerLoss(err) || (side.listenersReceived && isBatonError(err, 'ERR_BATON_PEER_TIMEOUT'))) {
      // The predecessor is gone before start() got all it sends: nobody serves. Carry on as a
      // generation of our own, with the listeners we hold (inherited on the exec path, or received
      // already), binding the rest: the predecessor's ports are free once it is gone, or about to
      // be — a bind retries EADDRINUSE for BIND_RETRY_MS.
      const number = (side.reply?.generation ?? 0) + 1;
      const warning = new BatonError(
        'ERR_BATON_PREDECESSOR_LOST',
        `${side.label} went away before the handover's listeners and state were complete (${asError(err).message}); generation ${number} (pid ${process.pid}) carries on alone with the ${pool.length} listeners it holds and binds the others itself`,
        { cause: err },
      );
      const listeners = new ListenerSet(pool, (s) => tracker.track(s), {
        byName: supervised,
        retryAddressInUseMs: BIND_RETRY_MS,
        ticketKeys,
      });
      return linked(
        new Generation(settings, {
          origin,
          number,
          listeners,
          tracker,
          predecessor: undefined,
          predecessorPid: undefined,
          // The predecessor is gone (it drops out); generations older than it may still drain.
          lineage: side.reply ? Lineage.after(side.reply) : Lineage.none(),
          state: { present: false },
          warnings: [warning],
        }),
      );
    }
    for (const l of pool) closeQuietly(l.fd);
    if (isBatonError(err)) throw err;
    throw new BatonError('ERR_BATON_PREDECESSOR_LOST', `takeover from ${side.label} failed: ${asError(err).message}`, { cause: err });
  }
}

/** How long a successor whose predecessor vanished before sending its listeners retries binding a port still in use. */
export const BIND_RETRY_MS = 2_000;

/** Matches the manifest with the fds: riding on the frame (takeover) or inherited by number (exec). */
function adoptManifest(payload: ListenersPayload, frameFds: number[], inherited: InheritedListener[]): InheritedListener[] {
  const entries = payload.listeners;
  const out: InheritedListener[] = [];
  try {
    if (frameFds.length > 0) {
      if (frameFds.length !== entries.length) {
        throw new BatonError(
          'ERR_BATON_BAD_FRAME',
          `listener manifest names ${entries.length} listeners but carries ${frameFds.length} fds`,
        );
      }
      entries.forEach((e, i) => out.push(adoptInheritedFd(frameFds[i]!, `listener '${e.name}'`, e.name)));
    } else {
      // Exec path: the fds came as LISTEN_FDS and carry their names already; the manifest confirms them.
      for (const e of entries) {
        const match = inherited.find((l) => l.name === e.name);
        if (!match)
          throw new BatonError(
            'ERR_BATON_INHERITED_FD_INVALID',
            `listener '${e.name}' is in the manifest but was not inherited (fd ${e.inheritedFd})`,
          );
      }
    }
  } catch (err) {
    for (const fd of frameFds) closeQuietly(fd);
    for (const l of out) closeQuietly(l.fd);
    throw err;
  }
  return out;
}

/** `maxGenerations`: an integer of at least 2 (one serving, one draining), else ERR_BATON_INVALID_OPTION. */
function generationsBound(v: number | undefined): number {
  const n = v ?? Defaults.maxGenerations;
  if (!Number.isInteger(n) || n < 2) {
    throw new BatonError('ERR_BATON_INVALID_OPTION', `start(): maxGenerations must be an integer of at least 2 (got ${JSON.stringify(v)})`);
  }
  return n;
}

function resolveSettings(o: StartOptions): GenerationSettings {
  if (typeof o?.name !== 'string' || !namePattern.test(o.name)) {
    throw new BatonError('ERR_BATON_INVALID_OPTION', `start(): name must match ${namePattern} (got ${JSON.stringify(o?.name)})`);
  }
  const num = (key: keyof typeof Defaults): number => {
    const v = o[key] ?? Defaults[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new BatonError('ERR_BATON_INVALID_OPTION', `start(): ${key} must be a positive number (got ${JSON.stringify(v)})`);
    }
    return v;
  };
  const socketDir = o.socketDir ?? defaultSocketDir();
  return {
    name: o.name,
    socketPath: path.join(socketDir, `${o.name}.sock`),
    helloTimeoutMs: num('helloTimeoutMs'),
    readyTimeoutMs: num('readyTimeoutMs'),
    drainTimeoutMs: num('drainTimeoutMs'),
    migrateTimeoutMs: num('migrateTimeoutMs'),
    livenessTimeoutMs: num('livenessTimeoutMs'),
    migrateBatchSize: Math.floor(num('migrateBatchSize')) || 1,
    migrate: o.migrate ?? true,
    migrateAfterResponse: o.migrateAfterResponse ?? true,
    closeUpgraded: o.closeUpgraded ?? true,
    tlsTicketKeys: o.tlsTicketKeys ?? true,
    killGraceMs: num('killGraceMs'),
    datagramLingerMs: num('datagramLingerMs'),
    maxFrameBytes: num('maxFrameBytes'),
    preAuthFrameBytes: num('preAuthFrameBytes'),
    maxStateBytes: num('maxStateBytes'),
    maxGenerations: generationsBound(o.maxGenerations),
    upgradeSignal: o.upgradeSignal === undefined ? 'SIGUSR2' : o.upgradeSignal,
    allowRoot: o.allowRoot ?? true,
    allowedUids: o.allowedUids ?? [],
    pidFile: o.pidFile,
    exec: o.exec ?? {},
    state: o.state,
    consistency: o.consistency === true,
    app: o.app,
    namedOnPurpose: o.namedOnPurpose === true,
  };
}
