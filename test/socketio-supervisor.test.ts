/** socket.io under `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';
import { sized } from './helpers/size.js';

/** A representative slice in `npm test`; 10 under BATON_TEST_FULL=1 (helpers/size.ts). */
const upgrades = sized(10, 4);

describeSocketIo('socket.io under upgrades (baton start)', [
  { upgrades, path: 'reload', transports: ['websocket'] },
  { upgrades, path: 'upgrade', transports: ['websocket'] },
]);
