/**
 * A compliant HTTP/2 client for scenario 2 (node:http2, in the bench
 * process), next to h2load: `sessions` connections, each keeping `streams`
 * requests in flight. Unlike h2load it does what RFC 9113 allows a client to
 * do at an upgrade: a stream refused with REFUSED_STREAM — or left above the
 * last stream id of a GOAWAY, which is the same promise: never processed — is
 * sent again, and a connection that received GOAWAY or ended is replaced by a
 * new one. What is left as **failed** is what no client could safely retry:
 * a stream reset otherwise, a connection that died under a stream, a non-2xx
 * answer, or no answer within REQUEST_TIMEOUT_MS.
 *
 * Each connection widens its receive window to 1 MiB, as browsers do (Chrome
 * and Firefox grant 12–15 MB): Node's default keeps it at the protocol's
 * minimum, where a server cannot move the connection (see
 * src/migrate/http2-session.ts) and drains it with GOAWAY instead.
 */
import http2 from 'node:http2';

const { NGHTTP2_REFUSED_STREAM } = http2.constants;
/** The connection receive window each session grants. */
const CONNECTION_WINDOW = 1 << 20;
/** A stream not answered within this counts as failed. */
const REQUEST_TIMEOUT_MS = 10_000;

/** What the client saw. */
export interface H2ClientTotals {
  completed: number;
  /** Streams refused (never processed) and sent again. */
  retried: number;
  failed: number;
  /** Connections opened, the first ones included. */
  connects: number;
  connectErrors: number;
  /** Why streams failed (error code or rst code). */
  errors: Record<string, number>;
}

interface Slot {
  session: http2.ClientHttp2Session | undefined;
  /** The session said GOAWAY: no new stream goes to it. */
  draining: boolean;
}

type Outcome = { kind: 'ok' } | { kind: 'refused' } | { kind: 'failed'; why: string };

export class H2Clients {
  readonly totals: H2ClientTotals = { completed: 0, retried: 0, failed: 0, connects: 0, connectErrors: 0, errors: {} };
  #running = true;
  readonly #workers: Promise<void>[] = [];
  readonly #slots: Slot[] = [];

  constructor(
    readonly origin: string,
    readonly sessions: number,
    readonly streams: number,
  ) {
    for (let i = 0; i < sessions; i++) {
      const slot: Slot = { session: undefined, draining: false };
      this.#slots.push(slot);
      for (let j = 0; j < streams; j++) this.#workers.push(this.#worker(slot));
    }
  }

  #sessionOf(slot: Slot): http2.ClientHttp2Session {
    const s = slot.session;
    if (s && !slot.draining && !s.closed && !s.destroyed) return s;
    const session = http2.connect(this.origin);
    session.once('connect', () => session.setLocalWindowSize(CONNECTION_WINDOW));
    this.totals.connects++;
    slot.session = session;
    slot.draining = false;
    session.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET') this.totals.connectErrors++;
    });
    session.on('goaway', () => {
      if (slot.session === session) slot.draining = true;
      // Let the streams below the last stream id finish, then let go of the connection.
      session.close();
    });
    session.on('close', () => {
      if (slot.session === session) slot.session = undefined;
    });
    return session;
  }

  #once(slot: Slot): Promise<Outcome> {
    return new Promise((resolve) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = this.#sessionOf(slot).request({ ':path': '/' });
      } catch (err) {
        // The session went away between the check and the request (GOAWAY already received): never sent.
        slot.draining = true;
        resolve(
          (err as NodeJS.ErrnoException).code === 'ERR_HTTP2_GOAWAY_SESSION' ? { kind: 'refused' } : { kind: 'failed', why: String(err) },
        );
        return;
      }
      let status = 0;
      let ended = false;
      let error: string | undefined;
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.close(http2.constants.NGHTTP2_CANCEL));
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
      req.on('end', () => (ended = true));
      req.resume();
      req.on('close', () => {
        if (req.rstCode === NGHTTP2_REFUSED_STREAM) resolve({ kind: 'refused' });
        else if (ended && status >= 200 && status < 400 && !error) resolve({ kind: 'ok' });
        else if (status >= 400) resolve({ kind: 'failed', why: `status ${status}` });
        // The stream never got an id: its connection never came up, nothing was sent.
        else if (!req.id) resolve({ kind: 'refused' });
        else resolve({ kind: 'failed', why: error ?? `rst ${req.rstCode}` });
      });
    });
  }

  async #worker(slot: Slot): Promise<void> {
    while (this.#running) {
      const o = await this.#once(slot);
      if (o.kind === 'ok') this.totals.completed++;
      else if (o.kind === 'refused') {
        this.totals.retried++;
        // Give a dead listener a moment instead of spinning on refused connects.
        if (slot.session === undefined) await new Promise((r) => setTimeout(r, 5));
      } else {
        this.totals.failed++;
        this.totals.errors[o.why] = (this.totals.errors[o.why] ?? 0) + 1;
      }
    }
  }

  /** Stops sending, waits for the streams in flight, closes the connections. */
  async stop(): Promise<H2ClientTotals> {
    this.#running = false;
    await Promise.all(this.#workers);
    for (const slot of this.#slots) slot.session?.close();
    return this.totals;
  }
}
