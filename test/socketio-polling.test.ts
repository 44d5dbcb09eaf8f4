/** socket.io clients on long-polling only: their sessions are closed at the cutover too (see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';
import { sized } from './helpers/size.js';

/** A representative slice in `npm test`; 10 under BATON_TEST_FULL=1 (helpers/size.ts). */
const upgrades = sized(10, 4);

describeSocketIo('socket.io long-polling clients under upgrades', [
  { upgrades, path: 'takeover', transports: ['polling'] },
  { upgrades, path: 'takeover', transports: ['polling'], recovery: true },
]);
