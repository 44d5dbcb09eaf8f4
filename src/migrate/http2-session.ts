/**
 * Moving a live HTTP/2 (h2c) connection to the successor, without the client
 * seeing anything: no GOAWAY, no refused stream, the same TCP connection.
 *
 * A session's state is mostly nghttp2's, which cannot leave the process, so
 * the connection moves at a point where there is almost none of it:
 *
 * - **No HPACK decoding state.** Servers baton tracks advertise
 *   SETTINGS_HEADER_TABLE_SIZE 0, so clients never index request headers (the
 *   static table and Huffman coding still apply); a session moves only when its
 *   decoding table is empty. The encoding table needs nothing: a fresh encoder
 *   only refers to entries it inserted itself, which are the newest in the
 *   client's table and the last the client evicts.
 * - **No stream.** Reading stops (new bytes stay in the kernel and travel with
 *   the fd); the streams already read finish and their bytes flush.
 * - **A frame boundary.** Bytes nghttp2 read are gone, so the unread ones must
 *   start at a frame boundary. The predecessor sends a PING with a random
 *   payload (the fence) once reading stopped; its acknowledgement lands in the
 *   unread bytes, and walking frame headers from the first unread byte must
 *   reach it exactly (checked with MSG_PEEK, nothing consumed).
 * - **Settings and windows.** The successor's fresh session is fed a
 *   synthetic client preface: the client's settings and one WINDOW_UPDATE up
 *   to the send window the client granted (the connection WINDOW_UPDATEs among
 *   the unread bytes included: it replaces them). Its SETTINGS acknowledgement is
 *   dropped on the way out (Http2Bridge); the fence's acknowledgement and
 *   frames about streams that ended here are dropped on the way in.
 *
 * A client window below the initial 65 535 is kept by the bridge until the
 * client's WINDOW_UPDATEs cover the difference (see Http2Bridge).
 *
 * What cannot meet these conditions (a session that never quiets within its
 * freeze attempts, a server that widened its own receive window, pushed
 * streams, TLS) gets the GOAWAY drain.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:os';
import net from 'node:net';
import type http2 from 'node:http2';
import { loadBinding } from '../native/binding.js';
import { handleWriteQueue, http2OpenStreams } from '../native/internals.js';
import type { Emigration } from './emigration.js';
import { Http2Bridge } from './http2-bridge.js';
import {
  FRAME_HEADER_BYTES,
  INITIAL_WINDOW,
  connectionWindowIncrements,
  isConnectionWindowUpdate,
  scanToFence,
  syntheticPreface,
  type ClientSettings,
} from './http2-wire.js';
import { resumeReading, socketFd, stopReading } from './socket-control.js';

/** What travels with a migrating HTTP/2 connection (its entry's state). */
export interface Http2Travel {
  settings: ClientSettings;
  /**
   * The connection send window the client had granted as this process last
   * read it; WINDOW_UPDATEs among the unread bytes add to it.
   */
  sendWindow: number;
  /** The fence's PING payload, base64. */
  fence: string;
  /** Highest client stream id this process saw: frames about these streams are dropped. */
  lastStream: number;
  /** Largest frame the client may send (this server's SETTINGS_MAX_FRAME_SIZE). */
  maxFrameSize: number;
}

interface Followed {
  /** The connection's socket: the native one, or the bridge of a session that migrated here. */
  conn: net.Socket | Http2Bridge;
  /** Streams open, counted here only without Node's own map of them (http2OpenStreams). */
  open: number;
  last: number;
  /** The app's PINGs not acknowledged yet: their acks must not reach a successor, which never sent them. */
  pings: number;
  /** Node's own session.ping (the app's calls go through a counting wrapper). */
  ping: http2.ServerHttp2Session['ping'];
}

const followed = new WeakMap<http2.ServerHttp2Session, Followed>();

/**
 * Starts following a session of a tracked server: its connection, and how many
 * streams are open (Node does not say). Call from the server's 'session' event.
 */
export function followHttp2Session(session: http2.ServerHttp2Session, conn: net.Socket | Http2Bridge): void {
  const f: Followed = { conn, open: 0, last: 0, pings: 0, ping: session.ping.bind(session) };
  followed.set(session, f);
  // Node treats an unsolicited PING ack as a protocol error: a session moves only with none of the app's pending.
  session.ping = function (this: http2.ServerHttp2Session, ...args: unknown[]): boolean {
    const callback = args.pop() as (...a: unknown[]) => void;
    f.pings++;
    let sent = false;
    try {
      sent = (f.ping as (...a: unknown[]) => boolean)(...args, (...a: unknown[]) => {
        f.pings--;
        callback(...a);
      });
    } finally {
      if (!sent) f.pings--; // not sent (or threw): no callback will come
    }
    return sent;
  } as http2.ServerHttp2Session['ping'];
  // Node keeps its own map of open streams, read when the session migrates (openStreams());
  // only without it are streams counted here, one listener per stream.
  if (http2OpenStreams(session) !== undefined) return;
  // One function per session (a closed stream no longer knows its session).
  const closed = () => f.open--;
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    f.open++;
    if ((stream.id ?? 0) > f.last) f.last = stream.id!;
    stream.once('close', closed);
  });
}

/** Streams open on a followed session: Node's count where it keeps one, else the one kept by {@link followHttp2Session}. */
function openStreams(session: http2.ServerHttp2Session, f: Followed): number {
  return http2OpenStreams(session) ?? f.open;
}

/** Bytes of a session's unread input looked at for the fence (its requests are small: flow control bounds bodies). */
const PEEK_BYTES = 256 * 1024;
let peekBuffer: Buffer | undefined;
const EAGAIN = constants.errno.EAGAIN;
/** Longest a session stays frozen waiting for its quiet point, per attempt (and how long it reads between attempts). */
const QUIET_ATTEMPT_MS = 100;
const QUIET_ATTEMPTS = 5;
/** How often a freezing session's conditions are looked at. */
const POLL_MS = 1;

/** Why this session cannot start migrating at all, or undefined. */
function cannotMove(session: http2.ServerHttp2Session, f: Followed | undefined): string | undefined {
  if (!f) return 'not followed';
  if (session.closed || session.destroyed) return 'closing';
  if (session.pendingSettingsAck) return 'its settings are not acknowledged yet';
  if (session.localSettings.headerTableSize !== 0) return 'the client may index request headers';
  if (session.state.nextStreamID !== 2) return 'it pushed streams';
  const socket = f.conn instanceof Http2Bridge ? f.conn.socket : f.conn;
  if (socketFd(socket) === undefined) return 'no fd';
  return undefined;
}

/**
 * Freezes an HTTP/2 session and, once it meets the conditions above, offers
 * its connection to the emigration (entry kind `kind`). Returns false when it cannot start (the
 * caller drains the session with GOAWAY); `fallback` runs when it started but
 * could not leave (reading has resumed; drain it with GOAWAY).
 *
 * A frozen session reads nothing, so a stream that needs its client — a
 * request body still arriving, a response waiting for a WINDOW_UPDATE — cannot
 * finish. So a freeze lasts at most QUIET_ATTEMPT_MS: if the session is not
 * quiet by then it reads again for as long, and tries again, up to
 * QUIET_ATTEMPTS times (within `timeoutMs`); a session that never quiets (a
 * client downloading without pause through a small window) gets GOAWAY.
 */
export function offerHttp2Session(
  kind: string,
  emigration: Emigration,
  session: http2.ServerHttp2Session,
  name: string,
  timeoutMs: number,
  fallback: (why: string) => void,
): boolean {
  const f = followed.get(session);
  if (cannotMove(session, f) !== undefined) return false;
  const conn = f!.conn;
  const bridge = conn instanceof Http2Bridge ? conn : undefined;
  const socket = bridge ? bridge.socket : (conn as net.Socket);
  const fd = socketFd(socket)!;
  const started = performance.now();
  const freeze = (): Buffer | undefined => {
    if (!(bridge ? bridge.freeze() : stopReading(socket))) return undefined;
    const fence = randomBytes(8);
    if (f!.ping(fence, () => {})) return fence;
    resume();
    return undefined;
  };
  const resume = () => (bridge ? bridge.thaw() : resumeReading(socket));
  const giveUp = (why: string) => {
    resume();
    fallback(why);
  };
  const attempt = (n: number, fence: Buffer) => {
    const frozenAt = performance.now();
    const check = () => {
      if (session.destroyed || socket.destroyed) return; // ended meanwhile: nothing to move
      const now = performance.now();
      if (now - frozenAt > QUIET_ATTEMPT_MS || now - started > timeoutMs) {
        if (n >= QUIET_ATTEMPTS || now - started > timeoutMs) return giveUp(`no quiet point in ${n} attempts of ${QUIET_ATTEMPT_MS} ms`);
        // Let the streams that need their client go on (the fence's ack is read as an ordinary one), then try again.
        resume();
        return void setTimeout(() => {
          if (session.destroyed || socket.destroyed || session.closed) return;
          const next = freeze();
          if (next) attempt(n + 1, next);
          else fallback('it could not be frozen again');
        }, QUIET_ATTEMPT_MS);
      }
      const st = session.state;
      const flushed =
        openStreams(session, f!) === 0 &&
        f!.pings === 0 &&
        st.outboundQueueSize === 0 &&
        handleWriteQueue(socket) === 0 &&
        socket.writableLength === 0 &&
        // A bridged session's bytes read from the kernel but not yet in nghttp2 must get there first.
        socket.readableLength === 0 &&
        (!bridge || (bridge.writableLength === 0 && bridge.readableLength === 0));
      if (!flushed) return void setTimeout(check, POLL_MS);
      peekBuffer ??= Buffer.alloc(PEEK_BYTES);
      const peeked = loadBinding().peek(fd, peekBuffer);
      if (peeked === -EAGAIN) return void setTimeout(check, POLL_MS); // the fence is on its way
      // The client closed (0) or reset (-errno): reading again lets the session see it end.
      if (peeked <= 0) return resume();
      const scan = scanToFence(peekBuffer.subarray(0, peeked), fence, session.localSettings.maxFrameSize ?? 16_384);
      if (scan.misaligned !== undefined) return giveUp(`its unread bytes do not start at a frame boundary (${scan.misaligned})`);
      if (!scan.found) {
        if (peeked === PEEK_BYTES) return giveUp(`more than ${PEEK_BYTES} bytes arrived before the fence`);
        return void setTimeout(check, POLL_MS);
      }
      if ((st.inflateDynamicTableSize ?? 0) !== 0) return giveUp('its header decoding table is not empty');
      const receiveWindow = (st.effectiveLocalWindowSize ?? 0) - (st.effectiveRecvDataLength ?? 0);
      if (receiveWindow > INITIAL_WINDOW) return giveUp(`this server widened its receive window (${receiveWindow})`);
      const travel: Http2Travel = {
        settings: clientSettings(session.remoteSettings),
        sendWindow: st.remoteWindowSize ?? 0,
        fence: fence.toString('base64'),
        lastStream: Math.max(f!.last, st.lastProcStreamID ?? 0),
        maxFrameSize: session.localSettings.maxFrameSize ?? 16_384,
      };
      const offered = emigration.offer(socket, name, kind, {
        state: travel,
        restore: () => {
          if (bridge) bridge.thaw();
          fallback('refused by the successor');
        },
      });
      if (!offered) giveUp('migration stopped');
    };
    setTimeout(check, POLL_MS);
  };
  const fence = freeze();
  if (!fence) return false;
  attempt(1, fence);
  return true;
}

function clientSettings(s: http2.Settings): ClientSettings {
  return {
    headerTableSize: s.headerTableSize,
    enablePush: s.enablePush,
    maxConcurrentStreams: s.maxConcurrentStreams,
    initialWindowSize: s.initialWindowSize,
    maxFrameSize: s.maxFrameSize,
    maxHeaderListSize: s.maxHeaderListSize,
  };
}

/**
 * The successor's side: reads the connection up to the fence's
 * acknowledgement (already in the kernel when the fd was sent), then starts a
 * session of `server` on it behind an {@link Http2Bridge} fed the synthetic
 * preface. Owns `socket` (made on the migrated fd) from the call on. `onLost` is told if the bytes are not
 * what the predecessor promised (the connection is closed then).
 */
export function adoptHttp2Session(
  socket: net.Socket,
  server: net.Server,
  travel: Http2Travel,
  timeoutMs: number,
  onLost: (why: string) => void,
): void {
  const fence = Buffer.from(travel.fence, 'base64');
  let data: Buffer = Buffer.alloc(0);
  const lose = (why: string) => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.destroy();
    onLost(why);
  };
  const timer = setTimeout(() => lose(`the fence did not arrive within ${timeoutMs} ms`), timeoutMs);
  const onData = (chunk: Buffer) => {
    data = data.length === 0 ? chunk : Buffer.concat([data, chunk]);
    const scan = scanToFence(data, fence, travel.maxFrameSize);
    if (scan.misaligned !== undefined) return lose(scan.misaligned);
    if (!scan.found) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    stopReading(socket);
    socket.pause();
    // Frames about streams that ended in the predecessor (a late RST_STREAM or
    // WINDOW_UPDATE) name streams this session never saw: it would call that a
    // protocol error. Only the client's frames sent before the fence can.
    // Connection WINDOW_UPDATEs among them are merged into the preface's one.
    const granted = travel.sendWindow + connectionWindowIncrements(data, scan.frames);
    const kept = scan.frames
      .filter((h) => (h.stream === 0 && !isConnectionWindowUpdate(h)) || h.stream > travel.lastStream)
      .map((h) => data.subarray(h.at, h.at + FRAME_HEADER_BYTES + h.length));
    const head = Buffer.concat([syntheticPreface(travel.settings, granted), ...kept]);
    server.emit('connection', new Http2Bridge(socket, head, data.subarray(scan.fenceAt + 17), granted));
    socket.resume();
  };
  const onEnd = () => lose('the client closed the connection before the fence');
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.on('error', () => {}); // a reset before the session exists: 'close' follows
}
