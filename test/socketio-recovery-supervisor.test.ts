/** connectionStateRecovery across `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts). */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io connectionStateRecovery under upgrades (baton start)', [
  {
    path: 'reload',
    transports: ['websocket'],
    recovery: true,
    todo: 'at a load of 14–18 every session was recovered but WebSocket clients stalled up to 5.6 s (bound 2 s); not yet explained',
  },
  {
    path: 'upgrade',
    transports: undefined,
    recovery: true,
    todo: 'at a load of 14–18 a client left the old generation 2.25 s after the new master was ready (bound 2 s); not yet explained',
  },
]);
