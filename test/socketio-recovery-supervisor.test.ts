/**
 * connectionStateRecovery across `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts).
 * Under reload, before each upgrade a client connects that never answers the close frame (a stalled
 * network): the old worker takes the store once every session was sent its close, not once every
 * closing handshake ended, so nobody's reconnect waits for that client.
 */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io connectionStateRecovery under upgrades (baton start)', [
  { path: 'reload', transports: ['websocket'], recovery: true, holdout: true },
  {
    path: 'upgrade',
    transports: undefined,
    recovery: true,
    todo: 'a client left the old generation 2.0–2.25 s after the new master was ready (bound 2 s; the old workers are absorbed after the health window); open',
  },
]);
