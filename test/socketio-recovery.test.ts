/** connectionStateRecovery across upgrades: the store travels to the successor (see test/socketio-upgrade.test.ts), and the contrast without it. */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo(
  'socket.io connectionStateRecovery under upgrades (baton run)',
  [{ path: 'takeover', transports: undefined, recovery: true }],
  true,
);
