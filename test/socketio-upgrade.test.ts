/**
 * socket.io 4 (engine.io) under upgrades: an unmodified socket.io app (default
 * server settings, `transports: ['websocket']`, `transports: ['polling']`, and
 * with `connectionStateRecovery`) runs under `baton run` (upgraded by
 * takeover: the command run again; by exec: SIGUSR2 to the app) and under
 * `baton start` (upgraded by `baton reload` and `baton upgrade`);
 * socket.io-client clients each send a numbered message with an ack every
 * 20–50 ms (socket.io's `retries` option: a message not acknowledged is sent
 * again after a reconnect). engine.io's sessions cannot move with their
 * socket, so at each upgrade the old generation answers what it received,
 * closes each session (a WebSocket with 1012, a long-polling one with
 * engine.io's close packet) and reads nothing more; the client reconnects to
 * the successor at once. Checked per upgrade and per client: every message
 * acknowledged exactly once, in order, and processed by exactly one process
 * (each process logs what it processed); exactly one reconnect per client per
 * upgrade, to the new generation; no client stalled more than 2 s; the old
 * generation holds no realtime client 2 s after the successor is ready (no
 * split brain); and a broadcast after each upgrade reaches every client, those
 * connected before the upgrade and one connected after it.
 *
 * With connectionStateRecovery the app broadcasts a tick every 25 ms, and each
 * reconnect must be a recovery: `socket.recovered`, the same socket id, the
 * client's room kept, and every tick of every generation received in order,
 * none twice, none missed (those emitted while the client reconnected arrive
 * as its session's missed packets). The contrast turns the store handover off
 * (BATON_SOCKETIO_STORE=0) and expects every reconnect unrecovered and ticks
 * missed: the checks can fail.
 *
 * Size: CI runs 50 clients per test and 10 upgrades (the later socket.io files 4: helpers/size.ts);
 * BATON_TEST_FULL=1 (`npm run test:full`) runs 200 clients and 10 upgrades everywhere.
 *
 * Clients keep socket.io-client's defaults but for `retries` (with the
 * `ackTimeout` it needs), `auth` (naming the client) and a shorter
 * `reconnectionDelay` (200 ms instead of 1 s): socket.io-client waits
 * 0.5–1.5 s (randomised) before its first reconnection attempt, which alone
 * would use most of the 2 s — the client's own wait, not baton's (baton
 * closes the old session as soon as the successor is ready).
 */
import { describeSocketIo } from './helpers/socketio.js';

// 10 upgrades in npm test too, as since this file was written (the later socket.io files run 4).
const upgrades = 10;

describeSocketIo('socket.io under upgrades (baton run)', [
  { upgrades, path: 'takeover', transports: undefined },
  { upgrades, path: 'takeover', transports: ['websocket'] },
  { upgrades, path: 'exec', transports: ['websocket'] },
]);
