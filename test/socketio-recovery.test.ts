/** connectionStateRecovery across upgrades: the store travels to the successor (see test/socketio-upgrade.test.ts), and the contrast without it. */
import { describeSocketIo } from './helpers/socketio.js';
import { sized } from './helpers/size.js';

/** A representative slice in `npm test`; 10 under BATON_TEST_FULL=1 (helpers/size.ts). */
const upgrades = sized(10, 4);

describeSocketIo(
  'socket.io connectionStateRecovery under upgrades (baton run)',
  [{ upgrades, path: 'takeover', transports: undefined, recovery: true }],
  true,
);
