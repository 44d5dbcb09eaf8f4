/**
 * The predecessor's side of a handover: a serving generation serves one
 * successor at a time. A successor arrives either on the upgrade socket
 * (takeover: its peer credentials are checked first) or as the exec child the
 * generation spawned; both then run the same conversation — the successor's
 * Hello is checked, this side answers with its Hello, the listener fds and the
 * app state, and waits for Ready. Until Ready this generation accepts as
 * before, so a successor that fails costs nothing. After Ready it stops
 * accepting and drains, handing live connections over when migration is on,
 * and rolls back to serving if the successor dies before the drain ended.
 *
 * The same drain, without a successor, is what Generation#stop runs.
 *
 * This side moves no phase and emits no event: it reports what happened
 * ({@link PredecessorOutcome}) to its generation, which moves its phases and
 * emits its events.
 */
import type { LateState } from './late-state.js';
import { failpoint } from '../core/failpoint.js';
import type { ChildProcess } from 'node:child_process';
import type net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { BatonError, asError, fileWriteFailed, isBatonError } from '../core/errors.js';
import type { Phase } from '../core/phase.js';
import type { ConnectionTracker, DrainReport } from '../drain/connection-tracker.js';
import type { ListenerSet } from '../listeners/listener-set.js';
import type { Emigration, SocketMigration } from '../migrate/emigration.js';
import type { Migrator } from '../migrate/kind.js';
import { createMigrator } from '../migrate/migrator.js';
import type { Parking } from '../migrate/parking.js';
import type { WebSocketRegistry } from '../migrate/websocket.js';
import { closeQuietly } from '../native/socket-info.js';
import { probeUnixSocket, type UnixChannel } from '../native/unix-channel.js';
import { FramePeer } from '../protocol/frame-peer.js';
import {
  FrameType,
  PROTOCOL_VERSION,
  FEATURES,
  hasFeature,
  type DonePayload,
  type HelloPayload,
  type LineageEntry,
  type ListenerEntry,
  type StatePayload,
} from '../protocol/frames.js';
import { checkHello, uidAllowed } from './greeting.js';
import { tooManyGenerations } from './lineage.js';
import { Liveness } from './liveness.js';
import { childExit, explainSuccessorFailure, stopSuccessorProcess } from './successor-process.js';
import { UpgradeSocket } from './upgrade-socket.js';
import { Quiesced } from './quiesce.js';
import type { GenerationSettings } from './settings.js';

/** Reported once a successor is ready and the generation drains into it (Generation's `'upgrade'`). */
export interface UpgradeReport {
  via: 'takeover' | 'exec';
  successorPid: number;
  successorGeneration: number;
  /** From the successor's hello to its ready. */
  timeToReadyMs: number;
  /** Connections open here when accepting stopped. */
  connections: number;
}

/**
 * What the predecessor side reports to its generation, in the order it
 * happens; the generation moves its phases and emits its events for each
 * (Generation's `#onPredecessor`).
 */
export type PredecessorOutcome =
  /** A peer on the upgrade socket was refused before a handover began (uid, garbage, version, busy). */
  | { kind: 'peer-refused'; error: Error }
  /** A successor's Hello was accepted: the handover begins (→ `handing-over`). */
  | { kind: 'handover-started'; via: 'takeover' | 'exec'; pid: number }
  /**
   * The handover failed before the successor was ready; `started` tells
   * whether it had begun (→ back to `serving`) or the exec child failed before
   * its Hello (the phase never changed).
   */
  | { kind: 'handover-failed'; error: Error; started: boolean }
  /** Accepting stopped and the drain began, into a ready successor or (Generation#stop) by itself (→ `draining`). */
  | { kind: 'draining' }
  /** The successor is ready and the drain into it runs (after `'draining'`). */
  | { kind: 'successor-ready'; report: UpgradeReport }
  /** The successor died before the drain ended: this side accepts again and has its upgrade socket back (→ `serving`). */
  | { kind: 'rolled-back'; error: Error }
  /** The drain ended; everything this side held is closed (→ `exited`). */
  | { kind: 'drained'; report: DrainReport }
  /** A batch of live connections left for the successor. */
  | { kind: 'connections-out'; adopted: number; refused: number; withBytes: number }
  /** Something went wrong that did not stop serving. */
  | { kind: 'warning'; error: Error };

/**
 * A generation's connections and how each migrates, as the drain needs them:
 * all of it stays the generation's (tracked sockets, parked fds, the app's
 * handlers).
 */
export interface DrainSubjects {
  /** Every connection of the generation's servers, drained (or migrated) when it hands over or stops. */
  readonly tracker: ConnectionTracker;
  /** Idle connections adopted from the previous generation that no client woke yet: they leave or drain too. */
  readonly parking: Parking;
  /** The app's raw-socket migration handlers, by listener name (Generation#migrateSockets). */
  readonly socketHandlers: ReadonlyMap<string, SocketMigration>;
  /** The app's WebSocket servers and migration handlers, by listener name (Generation#migrateWebSockets). */
  readonly websockets: WebSocketRegistry;
}

/**
 * What the predecessor side needs of its generation, given once to the
 * {@link PredecessorSide} constructor. The generation keeps owning all of it:
 * the listeners (and their fds), the tracked and parked connections, its
 * phases, the pid file and the upgrade signal.
 */
export interface PredecessorHost {
  readonly settings: GenerationSettings;
  /** The generation's number; its successor becomes number + 1. */
  readonly number: number;
  /** The generation's phase now: a successor is served only while `serving`. */
  phase(): Phase;
  /** The generation's listeners: their fds go to the successor, they stop accepting for the drain (or resume on rollback). */
  readonly listeners: ListenerSet;
  /** The generation's connections, drained or migrated. */
  readonly connections: DrainSubjects;
  /** State handed to a successor during the drain, once complete (feature `late-state`, handover/late-state.ts). */
  readonly lateState: LateState;
  /** The app's state provider now: read at each handover, since Generation#setState may change it at any time. */
  stateProvider(): (() => unknown) | undefined;
  /** The older generations still alive now (handover/lineage.ts): the successor learns them, and they count against maxGenerations. */
  olderGenerations(): LineageEntry[];
  /** Takes each outcome, synchronously, as it happens. */
  report(outcome: PredecessorOutcome): void;
}

/** How a successor came: connected to the upgrade socket, or spawned by the exec path. */
type SuccessorArrival = { via: 'takeover'; peer: FramePeer; pid: number } | { via: 'exec'; child: ChildProcess; entries: ListenerEntry[] };

/**
 * A ready successor that a drain goes into: its channel, its pid (the kernel's
 * SO_PEERCRED pid on the takeover path, the child's on the exec path), whether
 * it answers Pings (its Hello named feature `ping`), and how to kill it when
 * it stops answering.
 */
export interface DrainTarget {
  peer: FramePeer;
  pid: number;
  pings: boolean;
  /** Its Hello named feature `late-state`: it takes LateState frames. */
  lateState?: boolean;
  /** SIGKILLs the successor; returns what happened, for the warning. */
  kill(): string;
}

/**
 * The predecessor side of one generation, created by that generation and kept
 * for its whole life.
 *
 * Call order: {@link PredecessorSide.bindUpgradeSocket} then
 * {@link PredecessorSide.publish} when the generation becomes the serving one
 * (Generation#ready); from then on successors connecting are served here, one
 * at a time (a second one is refused with ERR_BATON_UPGRADE_IN_PROGRESS).
 * {@link PredecessorSide.handOverToExec} serves an exec successor the
 * generation spawned; {@link PredecessorSide.drain} ends the generation
 * (Generation#stop), and only one drain runs at a time.
 *
 * Fds: the published upgrade socket is this side's; it is closed when a drain
 * starts and bound afresh on rollback. Each successor's channel is this
 * side's too (through its FramePeer): closed when the successor is refused or
 * fails, or when the drain into it ends or rolls back. Listening fds stay
 * their servers': a takeover successor receives the kernel's copies, an exec
 * one inherited its own at spawn; for a drain into a successor this side dups
 * each listening fd as a reserve, and either gives the reserves to the
 * servers on rollback or closes them when the drain ends. Connection fds that
 * migrate leave through the drain's Emigration, which closes this process's
 * copy once the successor acknowledged them.
 */
export class PredecessorSide {
  readonly #host: PredecessorHost;
  #upgradeSocket: UpgradeSocket | undefined;
  #drainRun: Promise<DrainReport> | undefined;
  /** Set while the successor asked for consistency: this generation is quiesced until its Ready (or failure). */
  #quiesced: Quiesced | undefined;
  /** Callers of a drain that rolled back: they get the report of the drain that ends the generation. */
  #nextDrain: ((report: DrainReport) => void)[] = [];

  constructor(host: PredecessorHost) {
    this.#host = host;
  }

  /**
   * The drain under way or finished, if one started and did not roll back:
   * it settles with the drain report once the phase is `'exited'`.
   */
  get drainRun(): Promise<DrainReport> | undefined {
    return this.#drainRun;
  }

  /**
   * Binds the upgrade socket at a temporary name (not yet published); every
   * connection on it is served as a successor. The caller owns the socket
   * until it passes it to {@link PredecessorSide.publish}, and closes it if it
   * never does (the generation did not become ready).
   */
  bindUpgradeSocket(): UpgradeSocket | undefined {
    const socketPath = this.#host.settings.socketPath;
    try {
      return UpgradeSocket.bind(
        socketPath,
        (channel) => void this.#acceptSuccessor(channel),
        (err, closed) => this.#warn(acceptFailed(socketPath, err, closed)),
      );
    } catch (err) {
      // A full disk, a vanished directory: best effort, the generation serves without it.
      this.#warn(fileWriteFailed(`${socketPath}.${process.pid}.tmp`, 'no takeover can reach this generation; serving on', err));
      return undefined;
    }
  }

  /**
   * Publishes `socket` (from {@link PredecessorSide.bindUpgradeSocket}) at the
   * socket path: successors now find this generation. From here this side
   * owns the socket and closes it when the drain starts.
   */
  publish(socket: UpgradeSocket | undefined): void {
    if (!socket) return;
    try {
      socket.publish();
    } catch (err) {
      socket.close();
      this.#warn(fileWriteFailed(socket.path, 'no takeover can reach this generation; serving on', err));
      return;
    }
    this.#upgradeSocket = socket;
  }

  /**
   * Serves the exec path's successor `child`, spawned with the listeners of
   * `entries` as inherited fds and the other end of `channel`. Takes `channel`
   * and `child` over: on failure the channel is closed and the child stopped
   * (SIGTERM, then SIGKILL); after Ready the channel carries the drain and is
   * closed when it ends. Resolves with the report once the successor is ready
   * (the drain then runs); rejects with the reason when it is not, and the
   * generation serves on.
   */
  handOverToExec(channel: UnixChannel, child: ChildProcess, entries: ListenerEntry[]): Promise<UpgradeReport> {
    return this.#handOver(channel, { via: 'exec', child, entries });
  }

  /**
   * Stops accepting and drains: into `successor` (a ready one, whose channel
   * this side then closes when the drain ends; it is pinged meanwhile when it
   * answers Pings, and killed when it stops answering) or, without one, by itself
   * (Generation#stop). `unlinkSocket` removes the upgrade socket path; a
   * handover keeps it, so the path never disappears before the successor's
   * publish. Memoised: a second call returns the running drain. Settles with
   * the report once the drain ended (`'drained'`), or with the next drain's
   * report after a rollback. The generation refuses a drain while it takes
   * over (Generation#stop).
   */
  async drain(
    target: DrainTarget | undefined,
    unlinkSocket: boolean,
    drainTimeoutMs = this.#host.settings.drainTimeoutMs,
  ): Promise<DrainReport> {
    if (this.#drainRun) return this.#drainRun;
    const host = this.#host;
    const successor = target?.peer;
    const { tracker, parking } = host.connections;
    const run = async (): Promise<DrainReport> => {
      host.report({ kind: 'draining' });
      this.#upgradeSocket?.close(unlinkSocket);
      // With a successor, keep the listening sockets alive (not accepting) until
      // the drain ends: if the successor dies meanwhile, this generation rolls
      // back and accepts again — connections wait in the backlog, none refused.
      const quiesced = this.#quiesced;
      this.#quiesced = undefined;
      const reserve = quiesced?.takeReserve() ?? (successor ? host.listeners.reserve() : []);
      host.listeners.stopAccepting();
      const stoppedReadingAt = performance.now();
      let lost: (() => void) | undefined;
      /** Set once the successor was declared hung: its own upgrade socket does not count as a server. */
      let hungPid: number | undefined;
      /**
       * Nobody but this generation would serve: nothing answers on the upgrade socket path, or only
       * the successor declared hung. The successor's channel also closes when it exits normally,
       * after handing over to a newer generation: that one answers on the path.
       */
      const nobodyServes = (): boolean => {
        try {
          const found = probeUnixSocket(host.settings.socketPath);
          if (found.kind === 'running') {
            const another = hungPid === undefined || found.channel.peerCredentials().pid !== hungPid;
            found.channel.close();
            return !another;
          }
          // Listening with a full backlog: whose it is cannot be asked, so a hung successor's does not count.
          if (found.kind === 'busy') return hungPid !== undefined;
        } catch {
          // Cannot tell: assume nobody serves, and serve.
        }
        return true;
      };
      /** The verdict on the successor's lost channel ('error', 'end', a closed final Ping: judged once): nobody else serves. */
      let orphaned: boolean | undefined;
      if (successor) {
        lost = () => {
          orphaned ??= nobodyServes();
          if (orphaned) tracker.cancelDrain();
        };
        successor.channel.once('end', lost);
        successor.channel.once('error', lost);
      }
      // Draining is queued on the channel before any Connections frame (and any Ping).
      const told = successor?.send(FrameType.Draining, { connections: this.#openConnections() }).catch(() => undefined);
      const liveness =
        target?.pings === true
          ? new Liveness(target.peer, host.settings.livenessTimeoutMs, () => {
              hungPid = target.pid;
              return this.#killHung(target, () => lost?.());
            })
          : undefined;
      const migration = successor && host.settings.migrate ? this.#migrator(successor) : undefined;
      const parked = parking.size;
      // With migration they leave with the HTTP/1.1 kind (its departures take them at the drain's start).
      if (!migration) parking.wakeAll(); // they drain like any idle connection
      const draining = tracker.drain(drainTimeoutMs, migration?.migrator);
      if (!migration) quiesced?.release(); // with migration, its first look just offered every paused connection
      // A successor that died right after Ready may have closed the channel already, its end
      // read with the Ready itself, before `lost` listened: roll back now.
      if (successor?.closed) lost?.();
      // After the drain's start (the kinds' departures began their closes): late state is complete only once they are done.
      const late =
        successor && target?.lateState ? host.lateState.deliver(successor, (e) => this.#warn(e), host.settings.helloTimeoutMs) : undefined;
      await told;
      if (successor) failpoint('predecessor.draining-sent');
      let report = await draining;
      // The drain ends only with a successor that still answers: one that hung
      // now would leave nobody serving once this generation exits. One whose
      // channel closed — killed after acknowledging the last batch, when the
      // drain had nothing left to cancel — is judged as a lost channel is.
      if (report && successor) {
        const outcome = liveness ? await liveness.final() : successor.closed ? 'closed' : 'alive';
        if (outcome === 'closed') lost?.();
        if (outcome === 'hung' || orphaned === true) {
          tracker.cancelDrain();
          report = undefined;
        }
      }
      liveness?.stop();
      if (report && migration) {
        // Parked connections are not tracked sockets: wait until they all left or came back.
        await migration.emigration.settled();
        const connections = report.connections + parked;
        const migrated = migration.emigration.migrated;
        report = { ...report, connections, migrated, drained: Math.max(0, connections - report.forced - migrated) };
      }
      if (lost) {
        successor!.channel.off('end', lost);
        successor!.channel.off('error', lost);
      }
      if (!report) {
        // Acknowledgements the successor sent before it went may still be queued on the
        // channel: read them first (those connections were its own and died with it),
        // then close the channel.
        await migration?.emigration.settled();
        const next = new Promise<DrainReport>((resolve) => this.#nextDrain.push(resolve));
        await this.#rollBack(successor!, reserve);
        this.#drainRun = undefined;
        return next;
      }
      for (const { fd } of reserve) closeQuietly(fd);
      for (const l of host.listeners.all) l.server.close(() => undefined);
      if (host.listeners.datagrams.length > 0) {
        // Replies to the datagrams read last may still be on their way out (the app's own timers).
        await delay(Math.max(0, stoppedReadingAt + host.settings.datagramLingerMs - performance.now()));
        host.listeners.closeDatagrams();
      }
      await late;
      await successor
        ?.send(FrameType.Done, {
          drained: report.drained,
          forced: report.forced,
          migrated: report.migrated,
          durationMs: report.durationMs,
        } satisfies DonePayload)
        .catch(() => undefined);
      if (successor) failpoint('predecessor.done-sent');
      successor?.close();
      host.report({ kind: 'drained', report });
      for (const resolve of this.#nextDrain.splice(0)) resolve(report);
      return report;
    };
    this.#drainRun = run();
    return this.#drainRun;
  }

  /**
   * The successor stopped answering Pings after it was ready: it must not
   * serve alongside this generation if it ever runs again, nor hold any
   * connection, so it is killed (SIGKILL also ends a stopped process). Its
   * channel ending is the proof of its death: then the drain's rollback
   * (`lost`) goes ahead as for a successor that died. A successor that cannot
   * be killed (EPERM) or does not die within `killGraceMs` is given up on: its
   * channel is closed and the rollback goes ahead anyway.
   */
  #killHung(target: DrainTarget, lost: () => void): Promise<void> {
    const s = this.#host.settings;
    const outcome = target.kill();
    this.#warn(
      new BatonError(
        'ERR_BATON_SUCCESSOR_LOST',
        `${target.peer.label} stopped answering: no Pong within ${s.livenessTimeoutMs} ms (livenessTimeoutMs) after it was ready; ${outcome}; generation ${this.#host.number} (pid ${process.pid}) takes its listeners back`,
      ),
    );
    return new Promise((resolve) => {
      const channel = target.peer.channel;
      const dead = () => {
        clearTimeout(timer);
        channel.off('end', dead).off('error', dead);
        resolve();
      };
      const timer = setTimeout(() => {
        channel.off('end', dead).off('error', dead);
        // Closing our end first settles every read pending on it: batches in flight stay here.
        target.peer.close();
        lost();
        resolve();
      }, s.killGraceMs);
      channel.once('end', dead).once('error', dead);
    });
  }

  /** Open connections: tracked sockets and parked fds alike leave or drain. */
  #openConnections(): number {
    return this.#host.connections.tracker.size + this.#host.connections.parking.size;
  }

  #warn(error: Error): void {
    this.#host.report({ kind: 'warning', error });
  }

  /** Whether a peer of `uid` may take over: the same uid, root if allowed, or a listed uid. */
  #uidAllowed(uid: number): boolean {
    return uidAllowed(uid, this.#host.settings);
  }

  /** A connection on the upgrade socket: checks who it is before a single frame is read. */
  async #acceptSuccessor(channel: UnixChannel): Promise<void> {
    // Like the upgrade socket itself, a peer's channel does not keep this process alive.
    channel.unref();
    let creds;
    try {
      creds = channel.peerCredentials();
    } catch (err) {
      channel.close();
      this.#host.report({ kind: 'peer-refused', error: asError(err) });
      return;
    }
    const peer = new FramePeer(channel, {
      maxFrameBytes: this.#host.settings.maxFrameBytes,
      preAuthFrameBytes: this.#host.settings.preAuthFrameBytes,
      label: `upgrade peer pid ${creds.pid} uid ${creds.uid}`,
    });
    if (!this.#uidAllowed(creds.uid)) {
      const err = new BatonError(
        'ERR_BATON_PEER_REFUSED',
        `upgrade socket ${this.#host.settings.socketPath}: peer pid ${creds.pid} has uid ${creds.uid}, which may not take over a server of uid ${process.getuid?.()}`,
      );
      this.#host.report({ kind: 'peer-refused', error: err });
      await peer.fail(err);
      return;
    }
    await this.#handOver(channel, { via: 'takeover', peer, pid: creds.pid }).catch(() => {
      // Reported through 'upgrade-failed' / 'peer-refused'.
    });
  }

  /** The conversation with a successor, for both paths: Hello, Listeners, State, then its Ready starts the drain. */
  async #handOver(channel: UnixChannel, how: SuccessorArrival): Promise<UpgradeReport> {
    const host = this.#host;
    const s = host.settings;
    const pid = how.via === 'takeover' ? how.pid : (how.child.pid ?? 0);
    const peer =
      how.via === 'takeover'
        ? how.peer
        : new FramePeer(channel, { maxFrameBytes: s.maxFrameBytes, preAuthFrameBytes: s.preAuthFrameBytes, label: `successor pid ${pid}` });
    peer.label = `successor pid ${pid}`;
    const child = how.via === 'exec' ? how.child : undefined;
    const exitPromise = child ? childExit(child) : undefined;

    let hello: HelloPayload;
    try {
      const frame = await peer.expect(
        FrameType.Hello,
        how.via === 'exec' ? s.readyTimeoutMs : s.helloTimeoutMs,
        // An exec child's time to its Hello is part of its start-up: bounded by the ready timeout, from spawn.
        () =>
          how.via === 'exec'
            ? new BatonError(
                'ERR_BATON_READY_TIMEOUT',
                `successor pid ${pid} did not become ready within ${s.readyTimeoutMs} ms (readyTimeoutMs): it sent no hello`,
              )
            : new BatonError('ERR_BATON_HELLO_TIMEOUT', `successor pid ${pid} sent no hello within ${s.helloTimeoutMs} ms`),
      );
      hello = checkHello(frame.payload, s.name, pid, s.app);
      failpoint('predecessor.hello-received');
    } catch (err) {
      if (how.via === 'takeover' && isBatonError(err, 'ERR_BATON_CHANNEL_CLOSED')) {
        // Connected and left without a byte: a probe (is a generation serving here?), not a successor.
        peer.close();
        throw err;
      }
      const e = await explainSuccessorFailure(err, child, exitPromise, pid, s.killGraceMs);
      await peer.fail(e);
      stopSuccessorProcess(child, exitPromise, s.killGraceMs);
      host.report(how.via === 'takeover' ? { kind: 'peer-refused', error: e } : { kind: 'handover-failed', error: e, started: false });
      throw e;
    }
    const older = host.olderGenerations();
    const refusal =
      host.phase() !== 'serving'
        ? new BatonError(
            'ERR_BATON_UPGRADE_IN_PROGRESS',
            `generation ${host.number} (pid ${process.pid}) is ${host.phase()}: another successor is taking over or it is shutting down; successor pid ${hello.pid} refused`,
          )
        : tooManyGenerations(s.name, host.number, older, s.maxGenerations, `successor pid ${hello.pid}`);
    if (refusal) {
      const e = refusal;
      await peer.fail(e);
      stopSuccessorProcess(child, exitPromise, s.killGraceMs);
      host.report({ kind: 'peer-refused', error: e });
      throw e;
    }
    const started = performance.now();
    host.report({ kind: 'handover-started', via: how.via, pid: hello.pid });
    try {
      const state = this.#collectState();
      const reply: HelloPayload = {
        protocol: PROTOCOL_VERSION,
        pid: process.pid,
        generation: host.number,
        name: s.name,
        node: process.version,
        // What this side speaks: the successor expects late state only from a predecessor that names it.
        features: [...FEATURES],
        lineage: older,
      };
      // The successor grows its fd table for these before it is ready, not while they arrive.
      if (s.migrate) reply.connections = this.#openConnections();
      await peer.send(FrameType.Hello, reply);
      if (how.via === 'exec') {
        // The child inherited the listening fds when it was spawned: only their names and numbers travel.
        await peer.send(FrameType.Listeners, { listeners: how.entries });
      } else {
        // The kernel copies the fds into the successor; the servers here keep their own.
        const { entries, fds } = host.listeners.manifest();
        await peer.send(FrameType.Listeners, { listeners: entries }, fds);
      }
      failpoint('predecessor.listeners-sent');
      // Consistency mode: no request in flight when the successor's app loads its data (handover/quiesce.ts).
      if (hello.consistency === true) this.#quiesced = await Quiesced.begin(host.listeners, s.drainTimeoutMs);
      await peer.send(FrameType.State, this.#quiesced ? this.#collectState() : state);
      failpoint('predecessor.state-sent');
      await peer.expect(
        FrameType.Ready,
        s.readyTimeoutMs,
        () => new BatonError('ERR_BATON_READY_TIMEOUT', `successor pid ${hello.pid} did not become ready within ${s.readyTimeoutMs} ms`),
      );
      failpoint('predecessor.ready-received');
    } catch (err) {
      const e = await explainSuccessorFailure(err, child, exitPromise, hello.pid, s.killGraceMs);
      await peer.fail(e);
      stopSuccessorProcess(child, exitPromise, s.killGraceMs);
      await this.#quiesced?.resume(); // nothing was lost: the requests held meanwhile are served here
      this.#quiesced = undefined;
      host.report({ kind: 'handover-failed', error: e, started: true });
      throw e;
    }
    const report: UpgradeReport = {
      via: how.via,
      successorPid: hello.pid,
      successorGeneration: host.number + 1,
      timeToReadyMs: performance.now() - started,
      connections: this.#openConnections(),
    };
    const target: DrainTarget = {
      peer,
      pid,
      pings: hasFeature(hello, 'ping'),
      lateState: hasFeature(hello, 'late-state'),
      kill: () => killSuccessor(child, pid),
    };
    void this.drain(target, false);
    host.report({ kind: 'successor-ready', report });
    return report;
  }

  /** The app state for the State frame, checked here so a bad one fails the handover while this generation still serves. */
  #collectState(): StatePayload {
    const provider = this.#host.stateProvider();
    if (!provider) return { present: false };
    let json: string | undefined;
    try {
      json = JSON.stringify(provider());
    } catch (err) {
      throw new BatonError('ERR_BATON_STATE_INVALID', `the app state is not JSON-serialisable: ${asError(err).message}`, { cause: err });
    }
    if (json === undefined) return { present: false };
    const bytes = Buffer.byteLength(json);
    const limit = this.#host.settings.maxStateBytes;
    if (bytes > limit) {
      throw new BatonError('ERR_BATON_STATE_INVALID', `the app state is ${bytes} bytes; the limit (maxStateBytes) is ${limit}`);
    }
    return { present: true, value: JSON.parse(json) as unknown };
  }

  /**
   * The successor died while this generation drained: accept again on the
   * reserved listening sockets and take the upgrade socket path back (best
   * effort: a full disk must not cost the rollback; reported as warnings),
   * then report it: the generation rewrites its pid file and serves on as
   * before (`draining` → `serving`). Connections the successor had adopted
   * died with it (reported by the migration warning).
   */
  async #rollBack(successor: FramePeer, reserve: { server: net.Server; fd: number }[]): Promise<void> {
    const host = this.#host;
    successor.close();
    await host.listeners.resumeAccepting(reserve);
    this.publish(this.bindUpgradeSocket());
    host.report({
      kind: 'rolled-back',
      error: new BatonError(
        'ERR_BATON_SUCCESSOR_LOST',
        `${successor.label} went away after it was ready; generation ${host.number} (pid ${process.pid}) rolled back and accepts again`,
      ),
    });
  }

  /** How connections leave for `successor` during the drain. */
  #migrator(successor: FramePeer): { migrator: Migrator; emigration: Emigration } {
    const host = this.#host;
    return createMigrator(successor, {
      settings: host.settings,
      nameOf: (server) => host.listeners.of(server)?.name,
      socketHandlers: (name) => host.connections.socketHandlers.get(name),
      websockets: host.connections.websockets,
      parking: host.connections.parking,
      keep: (socket) => host.connections.tracker.keep(socket),
      onBatch: (info) => host.report({ kind: 'connections-out', ...info }),
      onWarning: (err) => this.#warn(err),
    });
  }
}

/** SIGKILLs a hung successor: the exec child, or the takeover peer by its SO_PEERCRED pid (it passed the uid check). */
function killSuccessor(child: ChildProcess | undefined, pid: number): string {
  try {
    if (child) child.kill('SIGKILL');
    else if (pid > 0) process.kill(pid, 'SIGKILL');
    else return 'its pid is unknown, it was not killed';
    return `killed it (SIGKILL, pid ${pid})`;
  } catch (err) {
    return `could not kill pid ${pid} (${(err as NodeJS.ErrnoException).code ?? asError(err).message}): its channel is closed`;
  }
}

/** The warning for an accept error of the upgrade socket. */
function acceptFailed(socketPath: string, err: Error, closed: boolean): BatonError {
  return new BatonError(
    'ERR_BATON_ACCEPT_FAILED',
    `upgrade socket ${socketPath}: ${err.message}; ${closed ? 'the socket is closed: no takeover can reach this generation; serving on' : 'accepting goes on (after a back-off when out of fds or memory), serving on'}`,
    { cause: err },
  );
}
