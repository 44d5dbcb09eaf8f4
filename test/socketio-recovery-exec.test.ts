/** connectionStateRecovery across exec upgrades (SIGUSR2 to the app; see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';
import { sized } from './helpers/size.js';

/** A representative slice in `npm test`; 10 under BATON_TEST_FULL=1 (helpers/size.ts). */
const upgrades = sized(10, 4);

describeSocketIo('socket.io connectionStateRecovery under exec upgrades', [
  { upgrades, path: 'exec', transports: undefined, recovery: true },
]);
