/**
 * The successor's opening of a handover conversation: Hello both ways, with
 * the protocol version checked; the fd table made ready for the connections
 * the predecessor announced. Shared by start() (a successor taking over) and
 * Generation#absorb (a serving generation taking another one's connections).
 */
import { failpoint } from '../core/failpoint.js';
import { debuglog } from 'node:util';
import { BatonError, asError } from '../core/errors.js';
import type { UnixChannel } from '../native/unix-channel.js';
import { growFdTable } from '../native/socket-info.js';
import type { FramePeer } from '../protocol/frame-peer.js';
import { FEATURES, FrameType, PROTOCOL_VERSION, type HelloPayload } from '../protocol/frames.js';

const debug = debuglog('baton:migrate');

/** What the greeting needs of the settings. */
export interface GreetingSettings {
  name: string;
  helloTimeoutMs: number;
}

/**
 * Sends this process's Hello, waits for the predecessor's, and checks its
 * protocol version (ERR_BATON_PROTOCOL_VERSION); renames `peer` after the
 * predecessor's pid. `timeout` builds the error for the later steps' waits.
 */
export async function greetPredecessor(
  peer: FramePeer,
  channel: UnixChannel,
  settings: GreetingSettings,
  generation = 0,
): Promise<{ reply: HelloPayload; timeout: () => BatonError }> {
  const hello: HelloPayload = {
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    generation,
    name: settings.name,
    node: process.version,
    // Our FramePeer answers Pings: the predecessor may check that this side stays alive once ready.
    features: [...FEATURES],
  };
  failpoint('successor.connected');
  await peer.send(FrameType.Hello, hello);
  failpoint('successor.hello-sent');
  const timeout = () => new BatonError('ERR_BATON_HELLO_TIMEOUT', `${peer.label} did not answer within ${settings.helloTimeoutMs} ms`);
  const reply = (await peer.expect(FrameType.Hello, settings.helloTimeoutMs, timeout)).payload as HelloPayload;
  if (reply.protocol !== PROTOCOL_VERSION) {
    throw new BatonError(
      'ERR_BATON_PROTOCOL_VERSION',
      `${peer.label} speaks handover protocol ${reply.protocol}; this build speaks ${PROTOCOL_VERSION}`,
    );
  }
  peer.label = `predecessor pid ${reply.pid}`;
  if (typeof reply.connections === 'number' && reply.connections > 0) makeRoomForConnections(channel, reply.connections);
  return { reply, timeout };
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
 * The predecessor's check of a successor's Hello: well-formed, same protocol
 * version, same server name. Throws ERR_BATON_BAD_FRAME,
 * ERR_BATON_PROTOCOL_VERSION or ERR_BATON_PEER_REFUSED.
 */
export function checkHello(payload: unknown, name: string, pid: number): HelloPayload {
  const h = payload as Partial<HelloPayload> | null;
  if (!h || typeof h !== 'object' || typeof h.pid !== 'number' || typeof h.name !== 'string' || typeof h.protocol !== 'number') {
    throw new BatonError('ERR_BATON_BAD_FRAME', `hello from pid ${pid} is malformed`);
  }
  if (h.protocol !== PROTOCOL_VERSION) {
    throw new BatonError(
      'ERR_BATON_PROTOCOL_VERSION',
      `successor pid ${pid} speaks handover protocol ${h.protocol}; this server speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (h.name !== name) {
    throw new BatonError('ERR_BATON_PEER_REFUSED', `successor pid ${pid} is for server '${h.name}', not '${name}'`);
  }
  return h as HelloPayload;
}
