/**
 * Stranded long-poll answers (socket.io under zero-code adoption, see
 * socketio.ts). At the cutover the old generation closes its long-polling
 * sessions with engine.io's own close, which rides on the session's pending
 * poll. A session with no poll pending at that moment — its client just got
 * the previous answer and its next poll is still on the way — keeps what it
 * queued (an acknowledgement, a broadcast) and its close until that next
 * poll comes; but the poll reaches the successor, which does not know the
 * session and answers 400. The client then reconnects without what was
 * queued: a message it had sent, processed by the old generation, is sent
 * again (socket.io's `retries`) and processed twice.
 *
 * So the old generation also encodes, for each such session, what its next
 * polls would have answered — the queued packets, then the close on the poll
 * after, as engine.io does — and hands it over with the late state; the
 * successor answers those polls with it, after engine.io's middlewares (CORS
 * headers are the app's). Never both in one answer: socket.io-client handles
 * a decoded packet on a later tick but a close at once, so an ack that
 * shares its payload with the close is dropped (its emit is failed and sent
 * again: processed twice). The old generation keeps its own copy: a poll that
 * still reaches it (a connection it keeps serving) gets it there, and the
 * client polls a closed session no more, so nobody answers twice. A message
 * the client sends on the session at the successor waits until the polls
 * took what was queued (at most {@link POST_WAIT_MS}), then gets engine.io's
 * 400, as before: a client that saw the 400 first would drop what was queued.
 * With nothing queued (only the close is held) it gets the 400 at once. That
 * matters for a client in the middle of its transport upgrade: engine.io-client
 * pauses polling until its POST is answered, so no poll comes while the POST
 * waits, and its WebSocket probe was closed at the cutover — the wait would
 * only delay its reconnect (one of 200 clients per upgrade stalled 2 s so).
 *
 * Only engine.io protocol 4 (socket.io 3 and later clients) is answered;
 * other sessions are left as they were.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { debuglog } from 'node:util';

/** The parts of an engine.io session used here. */
export interface PollingSessionLike {
  id: string;
  readyState: string;
  writeBuffer?: unknown[];
  transport?: {
    name?: string;
    writable?: boolean;
    protocol?: number;
    parser?: { encodePayload?: (packets: unknown[], callback: (payload: string) => void) => void };
  };
}

/** engine.io's server as its prototype's `verify` sees it. */
interface EngineServerLike {
  clients: Record<string, unknown>;
}

type Verify = (this: EngineServerLike, req: EngineRequest, upgrade: boolean, fn: (...args: unknown[]) => void) => unknown;

/** engine.io's request once its `prepare()` ran. */
interface EngineRequest extends IncomingMessage {
  _query?: Record<string, string>;
  res?: ServerResponse;
}

const debug = debuglog('baton:socketio');
/** How long the successor keeps a stranded answer no poll came for. */
const KEEP_MS = 30_000;
/**
 * How long a message on a stranded session waits for the session's poll to take what was queued. A
 * client that is not pausing polls again as soon as it got the previous answer (milliseconds); one
 * that is pausing never does while its POST waits, so this is also its stall.
 */
const POST_WAIT_MS = 1_000;

/** The answers the successor holds for a session of its predecessor's: one per poll, in order. */
interface Held {
  bodies: string[];
  /** Resolves when the last answer (the close) was taken. */
  taken: Promise<void>;
  take(): void;
}

/** The stranded-poll answers of one process: see the module comment. */
export class StrandedPolls {
  readonly #held = new Map<string, Held>();
  #settled: () => Promise<void> = () => Promise.resolve();

  private constructor() {}

  /**
   * Hooks `verify` on the prototype of the app's engine.io `Server` (loaded
   * with `sioRequire`, before the app's code runs); undefined when that
   * engine.io cannot be found or has no `verify`.
   */
  static hook(sioRequire: NodeJS.Require): StrandedPolls | undefined {
    let proto: { verify?: Verify } | undefined;
    try {
      proto = (sioRequire('engine.io') as { Server?: { prototype: { verify?: Verify } } }).Server?.prototype;
    } catch {
      return undefined;
    }
    const verify = proto?.verify;
    if (!proto || typeof verify !== 'function') return undefined;
    const polls = new StrandedPolls();
    proto.verify = function (this: EngineServerLike, req, upgrade, fn) {
      const q = req._query;
      const sid = q?.sid;
      if (upgrade || q?.transport !== 'polling' || sid === undefined || Object.hasOwn(this.clients, sid)) {
        return verify.call(this, req, upgrade, fn);
      }
      // An unknown session: perhaps one the predecessor handed over (its delivery may still be on the way).
      void polls.#answer(sid, req).then((answered) => {
        if (!answered) verify.call(this, req, upgrade, fn);
      });
      return undefined;
    };
    return polls;
  }

  /** Successor: `settled` resolves once the predecessor's late state was delivered (or none will be). */
  settleWith(settled: () => Promise<void>): void {
    this.#settled = settled;
  }

  /**
   * Predecessor, at the cutover, before the sessions are closed: what the
   * next polls of each long-polling session without a pending poll would
   * get, one payload per poll (the queued packets if any, then the close).
   * The sessions are left as they are.
   */
  static collect(sessions: Iterable<PollingSessionLike>): Record<string, string[]> {
    const answers: Record<string, string[]> = {};
    for (const s of sessions) {
      const t = s.transport;
      const encode = t?.parser?.encodePayload;
      if (t?.name !== 'polling' || t.writable !== false || t.protocol !== 4 || s.readyState !== 'open' || !encode) continue;
      const bodies: string[] = [];
      // encodePayload answers synchronously for every packet a session queues (strings, and binary as base64).
      const queued = s.writeBuffer ?? [];
      if (queued.length > 0) encode(queued, (payload) => bodies.push(payload));
      encode([{ type: 'close' }], (payload) => bodies.push(payload));
      answers[s.id] = bodies;
    }
    return answers;
  }

  /** Successor: takes the predecessor's answers. */
  receive(answers: Record<string, string[] | string> | undefined): void {
    const batch = new Map<string, Held>();
    for (const [sid, answer] of Object.entries(answers ?? {})) {
      // A single string: one payload for one poll (a predecessor of an earlier version).
      const bodies = typeof answer === 'string' ? [answer] : Array.isArray(answer) ? answer.filter((b) => typeof b === 'string') : [];
      if (bodies.length === 0) continue;
      let take!: () => void;
      const taken = new Promise<void>((r) => (take = r));
      batch.set(sid, { bodies, taken, take });
    }
    if (batch.size === 0) return;
    for (const [sid, held] of batch) this.#held.set(sid, held);
    // One timer for the delivery: answers no poll came for are dropped together.
    setTimeout(() => {
      for (const [sid, held] of batch) if (this.#held.get(sid) === held) this.#held.delete(sid);
    }, KEEP_MS).unref();
    debug('holding %d stranded poll answers', batch.size);
  }

  /** Answers `req` for stranded session `sid` if one is held: true when answered. */
  async #answer(sid: string, req: EngineRequest): Promise<boolean> {
    debug('a %s on session %s, unknown here: waiting for the predecessor', req.method, sid);
    await this.#settled();
    const held = this.#held.get(sid);
    const res = req.res;
    if (!held || !res) return false;
    if (req.method !== 'GET') {
      // The last body is the close: anything before it is what a 400 now would make the client drop.
      if (held.bodies.length > 1) await Promise.race([held.taken, new Promise((r) => setTimeout(r, POST_WAIT_MS).unref())]);
      debug('a %s on stranded session %s: 400 (%d answers still held)', req.method, sid, held.bodies.length);
      return false;
    }
    // The client polls again only once it got this answer, so the next one is for its next poll.
    const body = held.bodies.shift()!;
    if (held.bodies.length === 0) {
      this.#held.delete(sid);
      held.take();
    }
    debug('answered a stranded poll of %s (%d more)', sid, held.bodies.length);
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=UTF-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
    return true;
  }
}
