/**
 * socket.io under `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts): default
 * settings (clients start on long-polling and upgrade to WebSocket) and `transports: ['websocket']`.
 * With test/socketio-upgrade.test.ts and the recovery files, both settings run on every path.
 */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io under upgrades (baton start)', [
  { path: 'reload', transports: undefined },
  { path: 'reload', transports: ['websocket'] },
  { path: 'upgrade', transports: ['websocket'] },
]);
