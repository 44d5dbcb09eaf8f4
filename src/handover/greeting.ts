/**
 * The successor's opening of a handover conversation: Hello both ways, with
 * the protocol version checked; the fd table made ready for the connections
 * the predecessor announced (the successor's half, used by SuccessorSide in
 * handover/successor.ts); the predecessor's check of a successor's Hello and
 * the uid rule both sides apply (used by PredecessorSide).
 */
import { failpoint } from '../core/failpoint.js';
import { debuglog } from 'node:util';
import { BatonError, asError } from '../core/errors.js';
import type { UnixChannel } from '../native/unix-channel.js';
import { growFdTable } from '../native/socket-info.js';
import type { FramePeer } from '../protocol/frame-peer.js';
import { TICKET_KEYS_FEATURE } from '../listeners/ticket-keys.js';
import { FEATURES, FrameType, PROTOCOL_VERSION, type HelloPayload } from '../protocol/frames.js';

const debug = debuglog('baton:migrate');

/** What the greeting needs of the settings. */
export interface GreetingSettings {
  name: string;
  helloTimeoutMs: number;
  /** Whether root may be the other side (see {@link uidAllowed}). */
  allowRoot: boolean;
  /** Further uids that may be the other side. */
  allowedUids: readonly number[];
  /** Ask the predecessor to quiesce before it sends the state (data consistency mode). */
  consistency?: boolean;
  /** The app this process runs, and whether its name was given on purpose (see HelloPayload). */
  app?: string;
  namedOnPurpose?: boolean;
  /** Take the predecessor's TLS session-ticket keys (feature tls-ticket-keys); false: the feature is not named. */
  tlsTicketKeys?: boolean;
}

/**
 * Whether a peer of `uid` may be the other side of a handover, either way: the
 * same uid as this process, root when `allowRoot`, or one of `allowedUids`.
 * A predecessor checks its successor with it (who may take my listeners?), a
 * successor its predecessor (whose listeners, state and connections do I
 * accept?): the same trust, since the two hand the same things to each other.
 */
export function uidAllowed(uid: number, settings: Pick<GreetingSettings, 'allowRoot' | 'allowedUids'>): boolean {
  const own = process.getuid?.() ?? 0;
  return uid === own || (uid === 0 && settings.allowRoot) || settings.allowedUids.includes(uid);
}

/**
 * Sends this process's Hello, waits for the predecessor's (checked against its
 * schema and protocol version by the FramePeer: ERR_BATON_PROTOCOL_VERSION,
 * ERR_BATON_BAD_FRAME) within `helloTimeoutMs` (else ERR_BATON_HELLO_TIMEOUT);
 * renames `peer` after the predecessor's pid.
 *
 * Before a byte is sent, the predecessor's credentials (SO_PEERCRED of
 * `channel`) are checked with {@link uidAllowed}: the directory's checks
 * cannot exclude a socket of another user swapped in between them and the
 * connect. A predecessor of another uid is refused with ERR_BATON_PEER_REFUSED
 * before anything of it is read, so no fd of it is ever received.
 */
export async function greetPredecessor(
  peer: FramePeer,
  channel: UnixChannel,
  settings: GreetingSettings,
  generation = 0,
): Promise<HelloPayload> {
  const creds = channel.peerCredentials();
  if (!uidAllowed(creds.uid, settings)) {
    throw new BatonError(
      'ERR_BATON_PEER_REFUSED',
      `${peer.label}: the predecessor (pid ${creds.pid}) runs as uid ${creds.uid}, which may not hand over to a server of uid ${process.getuid?.()}; nothing was read from it`,
    );
  }
  const hello: HelloPayload = {
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    generation,
    name: settings.name,
    node: process.version,
    // Our FramePeer answers Pings: the predecessor may check that this side stays alive once ready.
    // Without tlsTicketKeys the predecessor must not send keys: the feature is left out.
    features: FEATURES.filter((f) => f !== TICKET_KEYS_FEATURE || settings.tlsTicketKeys !== false),
  };
  if (settings.consistency && generation === 0) hello.consistency = true;
  if (settings.app !== undefined) hello.app = settings.app;
  if (settings.namedOnPurpose) hello.namedOnPurpose = true;
  failpoint('successor.connected');
  await peer.send(FrameType.Hello, hello);
  failpoint('successor.hello-sent');
  const timeout = () =>
    new BatonError(
      'ERR_BATON_HELLO_TIMEOUT',
      `${peer.label} did not answer the Hello within ${settings.helloTimeoutMs} ms (helloTimeoutMs)`,
    );
  const reply = (await peer.expect(FrameType.Hello, settings.helloTimeoutMs, timeout)).payload;
  peer.label = `predecessor pid ${reply.pid}`;
  if (typeof reply.connections === 'number' && reply.connections > 0) makeRoomForConnections(channel, reply.connections);
  return reply;
}

/**
 * Grows the fd table before the predecessor's connections arrive: received fds take the
 * lowest free numbers, so the highest is about the fds open now (the channel is one of the
 * newest) plus the connections, and a margin for what opens meanwhile. Growing it while the
 * fds arrive would stall each doubling for an RCU grace period (see growFdTable). Best
 * effort: if it fails, migration still works, only slower.
 */
function makeRoomForConnections(channel: UnixChannel, connections: number): void {
  try {
    const slots = growFdTable(channel.fd, channel.fd + connections * 1.1 + 256);
    debug('fd table holds %d fds (%d connections announced)', slots, connections);
  } catch (err) {
    debug('could not grow the fd table for %d connections: %s', connections, asError(err).message);
  }
}

/**
 * The predecessor's check of a successor's Hello, whose payload the FramePeer
 * already checked against its schema and protocol version: the same server
 * name, and — when both sides name their app and the successor's name was not
 * given on purpose — the same app. Throws ERR_BATON_PEER_REFUSED or
 * ERR_BATON_APP_MISMATCH.
 */
export function checkHello(h: HelloPayload, name: string, pid: number, app?: string): HelloPayload {
  if (h.name !== name) {
    throw new BatonError('ERR_BATON_PEER_REFUSED', `successor pid ${pid} is for server '${h.name}', not '${name}'`);
  }
  if (app !== undefined && typeof h.app === 'string' && h.app !== app && h.namedOnPurpose !== true) {
    throw new BatonError(
      'ERR_BATON_APP_MISMATCH',
      `successor pid ${pid} runs ${h.app}, but server '${name}' runs ${app}; give both the same --name (BATON_NAME) to replace one app by the other on purpose`,
    );
  }
  return h;
}
