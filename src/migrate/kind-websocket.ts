/**
 * Migration kind `websocket`: WebSockets of `ws` 8 servers the app
 * registered with `generation.migrateWebSockets(name, wss, handlers)` (any
 * mode: `{ server }`, `{ port }`, `{ noServer: true }`), moved at a frame
 * boundary (websocket.ts).
 *
 * Its connections are not a server's: the tracker follows them as upgraded
 * connections of their HTTP server, while the WebSocketRegistry knows which
 * WebSockets migrate. So this kind accepts no server and offers, at the start
 * of a migrating drain, every open WebSocket of the registry ({@link Departures.start}).
 * It also closes gracefully (1012) any ws WebSocket that does not migrate
 * (over TLS — wss — none does: at the start of the drain, they are closed,
 * unless `closeUpgraded` is false: then they wait for the drain timeout).
 * Successor: a server-side WebSocket of the server registered under the same
 * listener and key is built on the socket and given to the app.
 */
import tls from 'node:tls';
import {
  missingInternalWarning,
  WEBSOCKET_RECEIVER_MISSING,
  webSocketOn,
  webSocketReceiver,
  webSocketSocket,
} from '../native/internals.js';
import { adoptAsSocket, refuse, type MigrationKind } from './kind.js';
import { adoptWebSocket, closeWebSocket, offerWebSocket, type WebSocketTravel } from './websocket.js';

/** The WebSocket kind (see the module comment). */
export const webSocketKind: MigrationKind = {
  name: 'websocket',
  description: 'WebSockets of ws servers registered with migrateWebSockets',
  accepts: () => false,
  depart: (host) => ({
    start() {
      let warned = false;
      for (const { ws, registration, listener, request } of host.websockets.open()) {
        if (!warned && webSocketReceiver(ws) === 'unknown') {
          warned = true;
          host.warn(missingInternalWarning(WEBSOCKET_RECEIVER_MISSING, 'this ws'));
        }
        const socket = webSocketSocket(ws);
        // A wss WebSocket cannot travel either: its TLS keys stay in this process.
        if (listener !== undefined && !(socket instanceof tls.TLSSocket)) {
          offerWebSocket(webSocketKind.name, ws, host.emigration, listener, registration, request, host.timeoutMs, host.keep);
          continue;
        }
        // Its HTTP server is not a listener of this generation, or it is over TLS: it cannot travel.
        if (socket) host.keep(socket);
        // A wss one waits for the drain timeout when the app asked so (closeUpgraded: false).
        if (host.closeUnmovable || !(socket instanceof tls.TLSSocket)) closeWebSocket(ws, host.timeoutMs);
      }
    },
  }),
  adopt(fd, entry, server, host) {
    const travel = entry.state as WebSocketTravel;
    const found = host.websockets.find(entry.listener, travel?.key);
    if (!found) {
      return refuse(
        fd,
        `listener '${entry.listener}' has no websocket handler for WebSocketServer '${travel?.key ?? '#0'}' in this generation`,
      );
    }
    return adoptAsSocket(fd, (socket) => {
      host.track(socket, server);
      const head = entry.head ? Buffer.from(entry.head, 'base64') : Buffer.alloc(0);
      const ws = adoptWebSocket(found.wss, socket, head, travel, found.handlers);
      host.websockets.adopted(ws, found, server, travel?.request);
    });
  },
  closeGracefully(socket, timeoutMs) {
    const ws = webSocketOn(socket);
    if (!ws) return false;
    closeWebSocket(ws, timeoutMs);
    return true;
  },
};
