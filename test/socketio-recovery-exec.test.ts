/** connectionStateRecovery across exec upgrades (SIGUSR2 to the app; see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io connectionStateRecovery under exec upgrades', [{ path: 'exec', transports: undefined, recovery: true }]);
