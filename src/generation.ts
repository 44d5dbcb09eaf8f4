import dgram from 'node:dgram';
import { once, EventEmitter } from 'node:events';
import type net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { debuglog } from 'node:util';
import { phaseBegins, publishPhase } from './core/channels.js';
import { BatonError, asError, fileWriteFailed, isBatonError } from './core/errors.js';
import { removeOwnPidFile, writePidFile } from './core/atomic-file.js';
import { PhaseMachine, type Phase } from './core/phase.js';
import type { ConnectionTracker, DrainReport } from './drain/connection-tracker.js';
import type { SocketMigration } from './migrate/emigration.js';
import type { ImmigrationHost } from './migrate/immigration.js';
import { Parking } from './migrate/parking.js';
import { WebSocketRegistry, type WebSocketMigration, type WssLike } from './migrate/websocket.js';
import { spawnSuccessor } from './handover/exec.js';
import { LISTEN_FDS_START } from './handover/inherit.js';
import { PredecessorSide, type PredecessorOutcome, type UpgradeReport } from './handover/predecessor.js';
import type { GenerationSettings, Origin } from './handover/settings.js';
import { SuccessorSide, type SuccessorHost, type SuccessorOutcome } from './handover/successor.js';
import type { ListenerSet, ListenAddress, Listener } from './listeners/listener-set.js';
import type { DatagramAddress, DatagramListener } from './listeners/datagram-listeners.js';
import { UnixChannel, probeUnixSocket } from './native/unix-channel.js';
import { isPeerLoss } from './protocol/frame-peer.js';
import { closeQuietly } from './native/socket-info.js';
import { missingInternalWarning, probeNodeInternals, probeWebSocketServer, type MissingInternal } from './native/internals.js';
import { LateState, type LateStateProvider, type LateStateReceiver } from './handover/late-state.js';
import { tooManyGenerations, type Lineage } from './handover/lineage.js';
import type { DonePayload, StatePayload } from './protocol/frames.js';

export type { GenerationSettings, Origin } from './handover/settings.js';
export type { UpgradeReport } from './handover/predecessor.js';

const debug = debuglog('baton');

/** Reported on the successor when its predecessor finished draining. */
export type PredecessorDone = DonePayload & { pid: number };

/** Events of a generation; `'phase'` carries every transition. */
export interface GenerationEvents {
  phase: [to: Phase, from: Phase];
  /** A successor said hello and the handover began. */
  'upgrade-start': [info: { via: 'takeover' | 'exec'; pid: number }];
  /** The successor is ready; this generation stopped accepting and drains. */
  upgrade: [report: UpgradeReport];
  /** The handover failed; this generation serves on as before. */
  'upgrade-failed': [error: Error];
  /** A peer on the upgrade socket was refused (uid, garbage, version, busy). */
  'peer-refused': [error: Error];
  /** The drain finished; `exited` follows. */
  drained: [report: DrainReport];
  /** This (draining) generation handed a batch of live connections to its successor. */
  'connections-out': [info: { adopted: number; refused: number; withBytes: number }];
  /** This (successor) generation adopted a batch of live connections from its predecessor. */
  'connections-in': [info: { adopted: number; refused: number }];
  /** This (successor) generation's predecessor finished draining; the upgrade channel to it is already closed. */
  'predecessor-done': [info: PredecessorDone];
  /** This successor's takeover failed (aborted by the predecessor). */
  failed: [error: Error];
  /** Something went wrong that did not stop serving (e.g. the predecessor vanished mid-handover). */
  warning: [error: Error];
  /** A listen() or listenDatagram() failed (its promise rejects with the same error): the supervisor's worker link reports it to the master. */
  'listen-failed': [info: { name: string; address: ListenAddress | DatagramAddress; error: Error }];
}

/** Internal: what start() found out, given to the Generation. */
export interface Beginning {
  origin: Origin;
  number: number;
  listeners: ListenerSet;
  tracker: ConnectionTracker;
  /** The conversation with the predecessor, after its State: Ready, Draining and the migrated connections are still to come. */
  predecessor: SuccessorSide | undefined;
  predecessorPid: number | undefined;
  /** The older generations that may still be alive (draining), bounded by maxGenerations. */
  lineage: Lineage;
  state: StatePayload;
  /** Emitted as `'warning'` right after start() resolved (e.g. the predecessor vanished before its listeners came). */
  warnings?: Error[];
}

/**
 * One generation of a server: the listeners it serves on, its place in the
 * upgrade chain, and its phase. Obtained from {@link start}.
 *
 * Call order: {@link Generation.listen} for each listener, then
 * {@link Generation.ready}. Until ready() a predecessor, if any, keeps
 * accepting; after it the predecessor drains and exits. Later a successor
 * (takeover or exec) replaces this generation the same way; when the drain
 * ends the phase becomes `'exited'` and the host process should exit.
 */
export class Generation extends EventEmitter<GenerationEvents> {
  /** How this generation came to be. */
  readonly origin: Origin;
  /** 1 for a fresh or systemd start, the predecessor's number + 1 after a handover. */
  readonly number: number;
  /** The pid of the predecessor this generation took over from, if any. */
  readonly predecessorPid: number | undefined;
  /** The settings in force. */
  readonly settings: GenerationSettings;

  readonly #phases = new PhaseMachine();
  readonly #listeners: ListenerSet;
  readonly #tracker: ConnectionTracker;
  readonly #state: StatePayload;
  #stateProvider: (() => unknown) | undefined;
  /** This generation as a successor: the rest of its takeover (handover/successor.ts). */
  #predecessor: SuccessorSide | undefined;
  #signalHandler: (() => void) | undefined;
  readonly #socketHandlers = new Map<string, SocketMigration>();
  readonly #parking = new Parking();
  readonly #websockets = new WebSocketRegistry((server) => this.#listeners.of(server)?.name);
  readonly #lateState = new LateState();
  readonly #lineage: Lineage;
  /** Internals of Node or ws found missing, and what degrades without each (warned once each). */
  readonly #degraded: MissingInternal[] = [];
  #stopRequested = false;
  /**
   * This generation as a predecessor: its upgrade socket, the successor it
   * serves, its drain and rollback (handover/predecessor.ts). Both sides
   * report outcomes; only this class moves phases and emits events, so it
   * reads as the lifecycle: set-up, ready, upgrade, stop, absorb.
   */
  readonly #asPredecessor: PredecessorSide;

  /** @internal Use {@link start}. */
  constructor(settings: GenerationSettings, beginning: Beginning) {
    super();
    this.settings = settings;
    this.origin = beginning.origin;
    this.number = beginning.number;
    this.predecessorPid = beginning.predecessorPid;
    this.#listeners = beginning.listeners;
    this.#tracker = beginning.tracker;
    this.#state = beginning.state;
    this.#lineage = beginning.lineage;
    this.#stateProvider = settings.state;
    this.#tracker.setUpgradedPolicy({
      claims: (socket) => this.#websockets.claims(socket),
      close: settings.closeUpgraded,
      timeoutMs: settings.migrateTimeoutMs,
    });
    this.#asPredecessor = this.#newPredecessorSide();
    phaseBegins(this);
    this.#phases.on('phase', (to, from) => {
      // The one place a generation's phase transitions are published (diagnostics channel, NODE_DEBUG=baton).
      publishPhase(this, 'generation', this.number, from, to);
      this.emit('phase', to, from);
    });
    // Installed for the whole life: a signal arriving while starting or
    // draining must be refused, not kill the process by its default action.
    this.#installSignal();
    if (beginning.predecessor) {
      this.#predecessor = beginning.predecessor;
      this.#phases.transition('taking-over');
      beginning.predecessor.follow(this.#successorHost());
    }
    // Node's internals are looked at once per process, and only for a generation that migrates: what is
    // missing degrades migration, not serving.
    if (settings.migrate) this.#degraded.push(...probeNodeInternals());
    const warnings = [...(beginning.warnings ?? []), ...this.#degraded.map((m) => missingInternalWarning(m))];
    // After start() resolved and its caller attached listeners (an `await` continues in a microtask, before this).
    if (warnings.length > 0) setImmediate(() => warnings.forEach((w) => this.emit('warning', w)));
  }

  /** The current phase. */
  get phase(): Phase {
    return this.#phases.phase;
  }

  /** Every phase entered so far, in order. */
  get phaseHistory(): readonly Phase[] {
    return this.#phases.history;
  }

  /** The listeners set up so far, in order. */
  getListeners(): readonly Listener[] {
    return this.#listeners.all;
  }

  /** The datagram (UDP) listeners set up so far, in order. */
  getDatagramListeners(): readonly DatagramListener[] {
    return this.#listeners.datagrams;
  }

  /** Open connections across all listeners. */
  get connections(): number {
    return this.#tracker.size + this.#parking.size;
  }

  /** Requests this generation's servers received so far (a counter from 0 at its start; see ConnectionTracker.requests). */
  get requests(): number {
    return this.#tracker.requests;
  }

  /**
   * The private internals of Node (probed at start-up) and of registered ws
   * servers that are missing, each with what degrades without it (also
   * emitted as `'warning'` ERR_BATON_INTERNAL_MISSING, and shown by `baton status`).
   */
  get degraded(): readonly MissingInternal[] {
    return this.#degraded;
  }

  /** True when the predecessor handed over a state value. */
  get hasInheritedState(): boolean {
    return this.#state.present;
  }

  /** The app state handed over by the predecessor (`undefined` when none). */
  get inheritedState(): unknown {
    return this.#state.value;
  }

  /**
   * Sets the function that supplies this generation's app state when a
   * successor takes over. It must return a JSON-serialisable value of at most
   * `maxStateBytes` bytes; otherwise the handover fails with
   * ERR_BATON_STATE_INVALID and this generation serves on.
   */
  setState(provider: (() => unknown) | undefined): void {
    this.#stateProvider = provider;
  }

  /**
   * Gives `server` the listener called `name`: the one inherited from the
   * predecessor or the service manager, else a fresh bind of `address`.
   * Works for http, https, http2 (plain and secure) and net servers; the server
   * is tracked for drain. Allowed before ready() and while serving.
   *
   * In a successor (phase `taking-over`) a listener inherited from the
   * predecessor is reserved here but accepts only from ready() on, while the
   * predecessor goes on accepting: a successor that crashes before ready never
   * held a client's connection. The returned Listener already has its address.
   * Also allowed while `handing-over`, for an app that closed a server and
   * listens again (its socket, held meanwhile, already went to the successor).
   */
  async listen(name: string, address: ListenAddress, server: net.Server): Promise<Listener> {
    const p = this.phase;
    if (p !== 'starting' && p !== 'taking-over' && p !== 'serving' && p !== 'handing-over') {
      throw new BatonError('ERR_BATON_INVALID_PHASE', `listen('${name}') is not allowed in phase '${p}'`);
    }
    try {
      return await this.#listeners.listen(name, address, server);
    } catch (err) {
      this.emit('listen-failed', { name, address, error: err as Error });
      throw err;
    }
  }

  /**
   * Binds a UDP socket as the datagram listener called `name` and resolves
   * with it bound: the socket inherited from the predecessor (exec or
   * takeover) or the service manager under that name, else a fresh bind of
   * `address` (`port` 0 or absent picks one; later generations inherit it).
   * `socket` is the app's unbound `dgram.Socket` of `address.type` (default: a
   * new one); the app attaches its `'message'` handler as usual. Allowed
   * before ready() and while serving.
   *
   * Across an upgrade the kernel socket is the same in both generations, and
   * exactly one of them reads it: in a successor (phase `taking-over`) an
   * inherited socket is bound at once (the app may send) but read only from
   * ready() on; the predecessor stops reading at that moment and datagrams
   * arriving meanwhile wait in the kernel's receive queue, so none is lost or
   * read twice. The predecessor's socket stays open for sending (replies to
   * what it read) until its drain ends, then baton closes it — a reply sent
   * later fails with ERR_SOCKET_DGRAM_NOT_RUNNING. A socket the predecessor had
   * connected to a peer (`socket.connect()`) is connected to it again here.
   * Socket options are the kernel socket's and carry over; multicast
   * membership does too, but Node does not know it: an app that joins groups
   * calls `addMembership()` again in each generation (EADDRINUSE there means
   * already joined). The socket's fd is owned by the socket; closing it
   * (`socket.close()`) before an upgrade releases the name.
   *
   * @throws ERR_BATON_LISTENER_CONFLICT (the name is taken, the socket is
   *   bound or of the other type), ERR_BATON_INHERITED_FD_INVALID (the
   *   inherited socket of that name is of the other family),
   *   ERR_BATON_INTERNAL_MISSING (this Node lacks the dgram internals baton
   *   needs), ERR_BATON_INVALID_PHASE, or the bind's system error.
   */
  async listenDatagram(
    name: string,
    address: DatagramAddress,
    socket: dgram.Socket = dgram.createSocket(address.type),
  ): Promise<dgram.Socket> {
    const p = this.phase;
    if (p !== 'starting' && p !== 'taking-over' && p !== 'serving') {
      throw new BatonError('ERR_BATON_INVALID_PHASE', `listenDatagram('${name}') is not allowed in phase '${p}'`);
    }
    try {
      return (await this.#listeners.listenDatagram(name, address, socket)).socket;
    } catch (err) {
      this.emit('listen-failed', { name, address, error: err as Error });
      throw err;
    }
  }

  /**
   * Makes the raw connections of listener `name` (a `net.Server`) migrate
   * alive to the successor instead of being cut at the drain timeout. Call it
   * in every generation, before ready(): the predecessor uses `state` to
   * capture each leaving connection's state (JSON); the successor's `adopt`
   * receives each arriving socket and that state, with the bytes the
   * predecessor had read but the app had not consumed already put back in
   * front of the stream. A connection leaves once its pending writes flushed;
   * the bytes the client sends meanwhile wait in the kernel and travel with it.
   */
  migrateSockets(name: string, handlers: SocketMigration): void {
    this.#socketHandlers.set(name, handlers);
  }

  /**
   * Makes the WebSockets of `wss` (a `ws` 8 WebSocketServer) migrate alive to
   * the successor at a frame boundary: no close frame, no message lost or
   * duplicated. Any mode: `{ server }`, `{ port }`, or `{ noServer: true }`
   * with the app calling `wss.handleUpgrade()` itself; `clientTracking: false`
   * too (baton follows the WebSockets the server accepts, not `wss.clients`).
   * Several servers may share one listener: `handlers.key` names each (default:
   * `#0`, `#1`, … in the order they are registered for that listener), and a
   * migrated WebSocket reaches the server registered under the same listener
   * and key in the successor (refused there when there is none: it stays and
   * is closed with 1012). `name` is the listener of the HTTP server the
   * upgrades arrive on, or null for a server that takes upgrades from several
   * listeners (the listener is then the one each request came in on).
   *
   * Call it in every generation before the server's first client connects and
   * before ready(): the predecessor uses `state` to capture each leaving
   * WebSocket's app state (JSON; it also gets the URL and headers of the
   * WebSocket's upgrade request); the successor's `adopt` receives a ready `ws`
   * WebSocket for the same client (also added to `wss.clients` if the server
   * tracks clients), that state and that request. A WebSocket with
   * permessage-deflate, whose compression context cannot leave the process, is
   * closed with 1012 (Service Restart) instead: create the server with
   * `perMessageDeflate: false` (ws's default) to migrate every connection. In
   * the old generation a migrated WebSocket ends with a local 'close' (1006)
   * and nothing is sent to the client.
   */
  migrateWebSockets(name: string | null, wss: unknown, handlers: WebSocketMigration): void {
    for (const m of probeWebSocketServer(wss as WssLike)) {
      if (this.#degraded.some((d) => d.internal === m.internal)) continue;
      this.#degraded.push(m);
      this.emit('warning', missingInternalWarning(m, 'this ws'));
    }
    this.#websockets.register(name, wss as WssLike, handlers);
  }

  /**
   * State that is complete only after the cutover (socket.io's recovery
   * store: its sessions are persisted as the old generation closes them),
   * handed to the successor during the drain (handover/late-state.ts).
   * `provide` runs in this generation when it drains into a successor, after
   * the successor's Ready, once upgraded connections started closing; it
   * resolves with a JSON value (or undefined: nothing to send) within a
   * bounded time — Done waits for it. `receive` runs in a successor for each
   * value its predecessor delivered under `key`. The returned `settled()`
   * resolves once `key` arrived, or no predecessor drains into this
   * generation (any more), or after `helloTimeoutMs`: await it before work
   * that needs the delivered state. Call it before ready().
   */
  handOverLate(key: string, handlers: { provide?: LateStateProvider; receive?: LateStateReceiver }): { settled(): Promise<void> } {
    if (handlers.provide) this.#lateState.provide(key, handlers.provide);
    if (handlers.receive) this.#lateState.receive(key, handlers.receive);
    return { settled: () => this.#lateState.settled(key, this.settings.helloTimeoutMs) };
  }

  /**
   * Declares this generation ready: unclaimed inherited fds are closed, the
   * predecessor (if any) is told to stop accepting and drain, and the upgrade
   * socket is published so the next successor finds this generation.
   * Rejects with the predecessor's reason when it aborted this takeover (the
   * generation is then `'failed'` and has stopped accepting). Call once.
   */
  async ready(): Promise<void> {
    const p = this.phase;
    if (p !== 'starting' && p !== 'taking-over') {
      throw new BatonError('ERR_BATON_INVALID_PHASE', `ready() is not allowed in phase '${p}'`);
    }
    this.#listeners.closeUnclaimed();
    // Start accepting on inherited listeners only now, just before the predecessor stops.
    await this.#listeners.activate();
    const socket = this.#asPredecessor.bindUpgradeSocket();
    const side = this.#predecessor;
    if (side && !side.peer.closed) {
      try {
        if (!(await side.ready(this.#listeners.all.length))) {
          // A predecessor frozen after it read Ready: this generation holds the listeners, it serves.
          this.emit(
            'warning',
            new BatonError(
              'ERR_BATON_PREDECESSOR_LOST',
              `predecessor pid ${this.predecessorPid} did not answer ready with Draining within ${this.settings.helloTimeoutMs} ms (helloTimeoutMs); serving on alone`,
            ),
          );
        }
      } catch (err) {
        if (!isPeerLoss(err)) {
          socket?.close();
          this.#fail(asError(err));
          throw err;
        }
        this.emit(
          'warning',
          new BatonError(
            'ERR_BATON_PREDECESSOR_LOST',
            `predecessor pid ${this.predecessorPid} went away before acknowledging ready; serving on`,
            { cause: err },
          ),
        );
      }
    }
    if (this.phase === 'failed') {
      socket?.close();
      throw new BatonError('ERR_BATON_ABORTED', 'the takeover was aborted by the predecessor');
    }
    this.#asPredecessor.publish(socket);
    this.#writePidFile();
    this.#phases.transition('serving');
    side?.serve(); // migrated connections reach a generation that serves
  }

  /**
   * Upgrades by the exec path, as nginx does on SIGUSR2: spawns the successor
   * from the code on disk with the listeners as inherited fds. Resolves with the
   * report once the successor is ready (this generation then drains); rejects
   * with the reason when it is not, and this generation serves on. Also
   * triggered by `upgradeSignal` (SIGUSR2 by default).
   */
  async upgrade(): Promise<UpgradeReport> {
    if (this.phase !== 'serving') {
      throw new BatonError(
        'ERR_BATON_UPGRADE_IN_PROGRESS',
        `generation ${this.number} (pid ${process.pid}) is ${this.phase}; an upgrade needs phase 'serving'`,
      );
    }
    // Refused before a process is started for nothing (a takeover successor is refused after its Hello).
    const refusal = tooManyGenerations(
      this.settings.name,
      this.number,
      this.#lineage.alive(),
      this.settings.maxGenerations,
      'an exec upgrade',
    );
    if (refusal) throw refusal;
    const { entries, fds } = this.#listeners.manifest();
    const { channel, peerFd } = UnixChannel.pair();
    let child: ChildProcess;
    try {
      child = spawnSuccessor(
        entries.map((e, i) => ({ name: e.name, fd: fds[i]! })),
        peerFd,
        this.settings.exec,
      );
    } catch (err) {
      channel.close();
      throw new BatonError('ERR_BATON_SPAWN_FAILED', `could not start the successor: ${asError(err).message}`, { cause: err });
    } finally {
      closeQuietly(peerFd);
    }
    const execEntries = entries.map((e, i) => ({ ...e, inheritedFd: LISTEN_FDS_START + i }));
    return this.#asPredecessor.handOverToExec(channel, child, execEntries);
  }

  /**
   * Stops without a successor: stops accepting, drains (see the drain
   * policy; connections still open after `drainTimeoutMs`, default the
   * generation's, are closed), closes everything baton owns and enters
   * `'exited'`. Idempotent: later calls return the same promise.
   */
  stop(options: { drainTimeoutMs?: number } = {}): Promise<DrainReport> {
    this.#stopRequested = true;
    const draining = this.#asPredecessor.drainRun;
    if (draining) return draining;
    if (this.phase === 'taking-over') {
      return Promise.reject(
        new BatonError('ERR_BATON_INVALID_PHASE', 'stop() is not allowed while taking over; the predecessor still serves'),
      );
    }
    if (this.phase === 'handing-over') {
      // Wait for the handover's outcome: if it succeeds the drain is already under way.
      return new Promise((resolve, reject) => {
        this.once('phase', () => this.stop(options).then(resolve, reject));
      });
    }
    return this.#asPredecessor.drain(undefined, true, options.drainTimeoutMs);
  }

  /** Resolves with the drain report once the phase is `'exited'`. */
  async exited(): Promise<DrainReport> {
    const draining = this.#asPredecessor.drainRun;
    if (draining) return draining;
    const [report] = (await once(this as EventEmitter, 'drained')) as [DrainReport];
    return report;
  }

  #fail(err: Error): void {
    if (this.phase === 'failed') return;
    this.#listeners.stopAccepting();
    this.#listeners.closeDeferred();
    this.#removeSignal();
    this.#phases.transition('failed');
    this.emit('failed', err);
  }

  /**
   * Takes over the live connections of another running generation of the same
   * server — the one whose upgrade socket is at `socketPath` — while this one
   * goes on serving. The supervisor uses it when an old master's workers
   * retire (WINCH): their connections move to a new master's worker instead
   * of being drained. The other generation drains into this one exactly as
   * into a successor; the listener fds it sends are closed here (this
   * generation has its own) and its state is ignored. Resolves with the
   * connections adopted once it is done; rejects when it cannot be reached or
   * refuses (it then drains by itself as usual).
   */
  async absorb(socketPath: string): Promise<{ adopted: number; refused: number }> {
    if (this.phase !== 'serving') {
      throw new BatonError('ERR_BATON_INVALID_PHASE', `absorb() needs phase 'serving', not '${this.phase}'`);
    }
    let found = probeUnixSocket(socketPath);
    if (found.kind === 'busy') {
      // Its backlog is full: wait for room off this (serving) thread.
      found = { kind: 'running', channel: await UnixChannel.connectWait(socketPath, this.settings.helloTimeoutMs) };
    }
    if (found.kind !== 'running') {
      throw new BatonError('ERR_BATON_PREDECESSOR_LOST', `nothing answers on ${socketPath} (${found.kind})`);
    }
    const side = new SuccessorSide(found.channel, this.settings, `generation at ${socketPath}`);
    const counts = { adopted: 0, refused: 0 };
    try {
      // Its listener fds are closed here (this generation has its own), its state is ignored.
      await side.takeOver(this.number, (_manifest, fds) => fds.forEach(closeQuietly));
      side.follow(
        this.#successorHost((o) => {
          if (o.kind === 'connections-in') {
            counts.adopted += o.adopted;
            counts.refused += o.refused;
          }
        }),
      );
      if (!(await side.ready(this.#listeners.all.length))) {
        throw new BatonError(
          'ERR_BATON_PEER_TIMEOUT',
          `${side.label} did not answer ready with Draining within ${this.settings.helloTimeoutMs} ms (helloTimeoutMs)`,
        );
      }
      side.serve();
      await side.finished;
      return counts;
    } catch (err) {
      side.close();
      throw err;
    }
  }

  /** Where this generation, as a successor, adopts migrated connections and hears of its predecessor (`also`: absorb's counts). */
  #successorHost(also?: (outcome: SuccessorOutcome) => void): SuccessorHost {
    const immigration: ImmigrationHost = {
      serverOf: (name: string) => this.#listeners.get(name)?.server,
      socketHandlers: (name: string) => this.#socketHandlers.get(name),
      websockets: this.#websockets,
      track: (socket: net.Socket, server: net.Server) => this.#tracker.add(socket, server),
      park: (fd: number, server: net.Server, listener: string) => this.#parking.park(fd, server, listener),
      timeoutMs: this.settings.migrateTimeoutMs,
      onLost: (listener: string, why: string) =>
        this.emit(
          'warning',
          new BatonError('ERR_BATON_MIGRATION_LOST', `a migrated HTTP/2 connection of listener '${listener}' was closed: ${why}`),
        ),
    };
    return {
      immigration,
      lateState: this.#lateState,
      report: (outcome) => {
        also?.(outcome);
        this.#onSuccessor(outcome);
      },
    };
  }

  /** What the successor side reported: the phase it means, and the event. */
  #onSuccessor(o: SuccessorOutcome): void {
    switch (o.kind) {
      case 'connections-in':
        this.emit('connections-in', { adopted: o.adopted, refused: o.refused });
        break;
      case 'predecessor-done':
        this.emit('predecessor-done', o.done);
        break;
      case 'aborted':
        // Only a takeover fails with it; absorb() rejects with the same error.
        if (this.phase === 'taking-over' || this.phase === 'starting') this.#fail(o.error);
        break;
      case 'warning':
        this.emit('warning', o.error);
        break;
    }
  }

  /** What the predecessor side reported: the phase it means, and the event. */
  #onPredecessor(o: PredecessorOutcome): void {
    switch (o.kind) {
      case 'peer-refused':
        this.emit('peer-refused', o.error);
        break;
      case 'handover-started':
        this.#phases.transition('handing-over');
        this.emit('upgrade-start', { via: o.via, pid: o.pid });
        break;
      case 'handover-failed':
        if (o.started) this.#phases.transition('serving');
        this.emit('upgrade-failed', o.error);
        // A stop() requested meanwhile goes ahead now.
        if (o.started && this.#stopRequested) void this.stop();
        break;
      case 'draining':
        this.#phases.transition('draining');
        break;
      case 'successor-ready':
        this.emit('upgrade', o.report);
        break;
      case 'rolled-back':
        this.#writePidFile();
        this.#phases.transition('serving');
        this.emit('upgrade-failed', o.error);
        break;
      case 'drained':
        this.#removePidFile();
        this.#removeSignal();
        // 'drained' first, as documented: a host that exits on phase 'exited' must still get the report.
        this.emit('drained', o.report);
        this.#phases.transition('exited');
        break;
      case 'connections-out':
        this.emit('connections-out', { adopted: o.adopted, refused: o.refused, withBytes: o.withBytes });
        break;
      case 'warning':
        this.emit('warning', o.error);
        break;
    }
  }

  /** What the predecessor side may use of this generation (see PredecessorHost). */
  #newPredecessorSide(): PredecessorSide {
    return new PredecessorSide({
      settings: this.settings,
      number: this.number,
      phase: () => this.phase,
      listeners: this.#listeners,
      connections: { tracker: this.#tracker, parking: this.#parking, socketHandlers: this.#socketHandlers, websockets: this.#websockets },
      lateState: this.#lateState,
      stateProvider: () => this.#stateProvider,
      olderGenerations: () => this.#lineage.alive(),
      report: (outcome) => this.#onPredecessor(outcome),
    });
  }

  #installSignal(): void {
    const signal = this.settings.upgradeSignal;
    if (!signal) return;
    this.#signalHandler = () => {
      debug('generation %d (pid %d): %s in phase %s', this.number, process.pid, signal, this.phase);
      this.upgrade().catch((err: unknown) => {
        // 'upgrade-failed' already reports a failed handover; report refusals here.
        if (
          isBatonError(err, 'ERR_BATON_UPGRADE_IN_PROGRESS') ||
          isBatonError(err, 'ERR_BATON_TOO_MANY_GENERATIONS') ||
          isBatonError(err, 'ERR_BATON_SPAWN_FAILED')
        )
          this.emit('upgrade-failed', asError(err));
      });
    };
    process.on(signal, this.#signalHandler);
  }

  #removeSignal(): void {
    if (this.#signalHandler && this.settings.upgradeSignal) process.off(this.settings.upgradeSignal, this.#signalHandler);
    this.#signalHandler = undefined;
  }

  /** Best effort: a pid file that cannot be written (a full disk) is reported, and serving goes on. */
  #writePidFile(): void {
    const file = this.settings.pidFile;
    if (!file) return;
    try {
      writePidFile(file);
    } catch (err) {
      this.emit('warning', fileWriteFailed(file, `it does not name pid ${process.pid}; serving on`, err));
    }
  }

  #removePidFile(): void {
    const file = this.settings.pidFile;
    if (!file) return;
    try {
      removeOwnPidFile(file);
    } catch (err) {
      this.emit('warning', fileWriteFailed(file, `it still names pid ${process.pid}, which exits`, err));
    }
  }
}
