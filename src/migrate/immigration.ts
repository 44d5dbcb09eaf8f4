import type net from 'node:net';
import { closeQuietly } from '../native/socket-info.js';
import type { ConnectionsAckPayload, DecodedFrame, FrameType } from '../protocol/frames.js';
import type { ArrivalHost } from './kind.js';
import { kindNamed } from './kinds.js';

/** What the successor needs to adopt connections. */
export interface ImmigrationHost extends ArrivalHost {
  /** The server of the listener called `name`, if this generation has it. */
  serverOf(name: string): net.Server | undefined;
}

/**
 * The successor's side of connection migration: gives each received fd to
 * the kind its entry names (kinds.ts), for the server that owns its listener
 * — an idle HTTP/1.1 connection is parked as a bare fd, a raw connection goes
 * to the app's `adopt` handler with the bytes the predecessor had read but
 * not consumed put back in front, and so on (each kind's file). An entry of a
 * kind this build does not know, or of a listener it does not have, is
 * refused: that connection stays with the predecessor and drains there.
 * Every fd is either adopted or closed here. Returns the acknowledgement.
 */
export function adoptConnections(
  frame: DecodedFrame<typeof FrameType.Connections>,
  host: ImmigrationHost,
): { ack: ConnectionsAckPayload; sockets: net.Socket[] } {
  const payload = frame.payload;
  const entries = payload.connections;
  const ack: ConnectionsAckPayload = { batch: payload.batch, adopted: [], refused: [] };
  const sockets: net.Socket[] = [];
  entries.forEach((entry, i) => {
    const fd = frame.fds[i];
    if (fd === undefined) {
      ack.refused.push({ id: entry.id, reason: 'no fd arrived for it' });
      return;
    }
    const kind = kindNamed(entry.kind);
    const server = host.serverOf(entry.listener);
    if (!kind || !server) {
      closeQuietly(fd);
      ack.refused.push({
        id: entry.id,
        reason: kind
          ? `listener '${entry.listener}' is not a listener of this generation`
          : `this generation cannot adopt a '${entry.kind}' connection`,
      });
      return;
    }
    const arrival = kind.adopt(fd, entry, server, host);
    if (!arrival.adopted) {
      ack.refused.push({ id: entry.id, reason: arrival.reason });
      return;
    }
    if (arrival.socket) sockets.push(arrival.socket);
    ack.adopted.push(entry.id);
  });
  // Fds beyond the manifest would leak: close them.
  for (const fd of frame.fds.slice(entries.length)) closeQuietly(fd);
  return { ack, sockets };
}
