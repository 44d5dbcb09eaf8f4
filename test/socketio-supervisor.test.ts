/** socket.io under `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io under upgrades (baton start)', [
  { path: 'reload', transports: ['websocket'] },
  { path: 'upgrade', transports: ['websocket'] },
]);
