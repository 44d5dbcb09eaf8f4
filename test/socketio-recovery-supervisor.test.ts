/**
 * connectionStateRecovery across `baton reload` and `baton upgrade` (see test/socketio-upgrade.test.ts).
 *
 * With a holdout (a client that never answers the close frame, as on a stalled network; it stays
 * connected to the old worker until ws's 30 s close timeout): the old worker takes socket.io's store
 * once every session was sent its close, not once every closing handshake ended, so no reconnecting
 * client's restore waits for another client. 5 clients keep the reconnect burst small, so a hold
 * shows: with the store taken after the closing handshakes (at most 2 s), every restore was held
 * until then and clients stalled ~4 s.
 */
import { describeSocketIo } from './helpers/socketio.js';

describeSocketIo('socket.io connectionStateRecovery under upgrades (baton start)', [
  { path: 'reload', transports: ['websocket'], recovery: true, holdout: true, clients: 5 },
  {
    path: 'reload',
    transports: ['websocket'],
    recovery: true,
    holdout: true,
    todo: "at loads of 13–36 some clients still stall 2.0–2.7 s: the store is taken 24–104 ms after the cutover and restores are held ≤ 32 ms, the rest is the reconnect itself — the client's close delivery (100–250 ms), its reconnection delay (100–300 ms) and 50 handshakes into the new worker on a starved CPU (spread over 1–1.3 s). Measured 2 Dec: at load 1.5 it passes (stalls ≤ 467 ms, reconnect gaps 131–350 ms); at load 9–11 it fails (stalls up to 3.5 s, gaps up to 2.9 s); open",
  },
  {
    path: 'upgrade',
    transports: undefined,
    recovery: true,
    todo: 'a client left the old generation 2.0–2.25 s after the new master was ready (bound 2 s): after master-ready come the CLI noticing it, healthWindowMs, WINCH, the absorb messages and a whole takeover conversation with each old worker (absorbing → cutover 220–1040 ms measured at load 14) before its sessions close. Measured 2 Dec: at load 1.5 it passes (longest stall 1.9 s), at load 11 a client left 2.6 s after ready; open',
  },
]);
