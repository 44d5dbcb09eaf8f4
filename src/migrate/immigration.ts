import http from 'node:http';
import net from 'node:net';
import { isH2cServer } from '../drain/connection-tracker.js';

import type { ConnectionsAckPayload, DecodedFrame, FrameType } from '../protocol/frames.js';
import type { SocketMigration } from './emigration.js';
import { adoptHttp2Session, type Http2Travel } from './http2-session.js';
import { adoptWebSocket, type WebSocketRegistry, type WebSocketTravel } from './websocket.js';
import { closeQuietly } from '../native/socket-info.js';

/** What the successor needs to adopt connections. */
export interface ImmigrationHost {
  /** The server of the listener called `name`, if this generation has it. */
  serverOf(name: string): net.Server | undefined;
  /** The app's handlers for raw connections of listener `name`. */
  socketHandlers(name: string): SocketMigration | undefined;
  /** The app's WebSocket servers registered for migration (a migrated WebSocket finds its own by listener and key). */
  websockets: WebSocketRegistry;
  /** Holds an idle HTTP/1.1 connection as a bare fd until its client sends something. */
  park(fd: number, server: net.Server, listener: string): void;
  /** Tracks a socket the app adopted itself (raw connections), for the next drain. */
  track(socket: net.Socket, server: net.Server): void;
  /** Bounds the wait for a migrated HTTP/2 connection's fence. */
  migrateTimeoutMs: number;
  /** A migrated connection lost after it was acknowledged (its bytes were not what was promised). */
  onLost(listener: string, why: string): void;
}

/**
 * The successor's side of connection migration: wraps each received fd in a
 * `net.Socket` and gives it to the server that owns its listener — an idle
 * HTTP/1.1 connection is parked as a bare fd and becomes a connection of its
 * server when its client sends the next request (see Parking); a raw connection to the app's `adopt` handler with the
 * bytes the predecessor had read but not consumed put back in front.
 * Every fd is either adopted or closed here. Returns the acknowledgement.
 */
export function adoptConnections(
  frame: DecodedFrame<typeof FrameType.Connections>,
  host: ImmigrationHost,
): { ack: ConnectionsAckPayload; sockets: net.Socket[] } {
  // Decoded with its schema (protocol/payloads.ts): one fd per entry, in order.
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
    const server = host.serverOf(entry.listener);
    const handlers = entry.kind === 'socket' ? host.socketHandlers(entry.listener) : undefined;
    const wsHandlers = entry.kind === 'websocket' ? host.websockets.find(entry.listener, (entry.state as WebSocketTravel)?.key) : undefined;
    if (!server || (entry.kind === 'socket' && !handlers) || (entry.kind === 'websocket' && !wsHandlers)) {
      closeQuietly(fd);
      const which = entry.kind === 'websocket' ? ` for WebSocketServer '${(entry.state as WebSocketTravel)?.key ?? '#0'}'` : '';
      ack.refused.push({ id: entry.id, reason: `listener '${entry.listener}' has no ${entry.kind} handler${which} in this generation` });
      return;
    }
    // A listener whose server changed protocol in this version cannot take the connection: it stays and drains there.
    const speaks = entry.kind === 'http2' ? isH2cServer(server) : entry.kind === 'http1' ? server instanceof http.Server : true;
    if (!speaks) {
      closeQuietly(fd);
      ack.refused.push({
        id: entry.id,
        reason: `listener '${entry.listener}' is not served by ${entry.kind === 'http2' ? 'an h2c' : 'an HTTP/1.1'} server here`,
      });
      return;
    }
    if (entry.kind === 'http2') {
      // The session starts once the client's bytes up to the fence are read (see http2-session.ts).
      sockets.push(
        adoptHttp2Session(fd, server, entry.state as Http2Travel, host.migrateTimeoutMs, (why) => host.onLost(entry.listener, why)),
      );
      ack.adopted.push(entry.id);
      return;
    }
    if (entry.kind === 'http1') {
      // Idle between two requests: parked until the client speaks (see Parking).
      host.park(fd, server, entry.listener);
      ack.adopted.push(entry.id);
      return;
    }
    let socket: net.Socket;
    try {
      socket = new net.Socket({ fd, readable: true, writable: true });
    } catch (err) {
      closeQuietly(fd);
      ack.refused.push({ id: entry.id, reason: (err as Error).message });
      return;
    }
    try {
      if (entry.kind === 'websocket') {
        host.track(socket, server);
        const head = entry.head ? Buffer.from(entry.head, 'base64') : Buffer.alloc(0);
        const travel = entry.state as WebSocketTravel;
        const ws = adoptWebSocket(wsHandlers!.wss, socket, head, travel, wsHandlers!.handlers);
        host.websockets.adopted(ws, wsHandlers!, server, travel?.request);
      } else {
        if (entry.head) socket.unshift(Buffer.from(entry.head, 'base64'));
        host.track(socket, server);
        handlers!.adopt(socket, entry.state);
      }
    } catch (err) {
      // Refused: closing our fd leaves the connection with the predecessor, untouched.
      socket.destroy();
      ack.refused.push({ id: entry.id, reason: `adopting it threw: ${(err as Error).message}` });
      return;
    }
    sockets.push(socket);
    ack.adopted.push(entry.id);
  });
  // Fds beyond the manifest would leak: close them.
  for (const fd of frame.fds.slice(entries.length)) closeQuietly(fd);
  return { ack, sockets };
}
