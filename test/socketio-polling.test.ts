/** socket.io clients on long-polling only: their sessions are closed at the cutover too (see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io long-polling clients under upgrades', [
  { path: 'takeover', transports: ['polling'] },
  { path: 'takeover', transports: ['polling'], recovery: true },
]);
