/** connectionStateRecovery across `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io connectionStateRecovery under upgrades (baton start)', [
  { path: 'reload', transports: ['websocket'], recovery: true },
  { path: 'upgrade', transports: undefined, recovery: true },
]);
