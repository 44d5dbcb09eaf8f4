/**
 * The two clients of a fault case, both independent of baton and counting
 * every request: keep-alive connections (one undici Client each, so each
 * failure is known with the pid that last answered on its connection) and a
 * fresh-connection prober (a new TCP connection every few ms, so a listener
 * nobody accepts on shows at once).
 */
import http from 'node:http';
import { Client } from 'undici';

/** One failed request: which client, the pid that last answered on its connection, and why. */
export interface Failure {
  source: 'keep-alive' | 'probe';
  at: number;
  /** Keep-alive: the pid that answered the previous request on this connection (undefined on a new connection). */
  lastPid: number | undefined;
  /** Probe: whether the TCP connection was established before it failed. */
  connected: boolean;
  error: string;
}

/** One answered request. */
export interface Success {
  source: 'keep-alive' | 'probe';
  at: number;
  pid: number;
}

/** Everything both clients saw, in order of completion. */
export class Traffic {
  sent = 0;
  ok = 0;
  readonly failures: Failure[] = [];
  /** The last answers (bounded), for time-to-serve and "who serves now". */
  readonly recent: Success[] = [];
  /** Answers per pid. */
  readonly byPid = new Map<number, number>();
  #waiters: { pred: (s: Success) => boolean; resolve: () => void }[] = [];

  success(s: Success): void {
    this.ok++;
    this.byPid.set(s.pid, (this.byPid.get(s.pid) ?? 0) + 1);
    this.recent.push(s);
    if (this.recent.length > 20_000) this.recent.splice(0, 10_000);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(s)) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves on the next answer satisfying `pred` (rejects after `timeoutMs`). */
  next(pred: (s: Success) => boolean, what: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push({ pred, resolve: done });
    });
  }

  /** Resolves once `n` fresh connections in a row were answered (satisfying `pred`), no probe failing in between. */
  servingStreak(n: number, timeoutMs: number, pred: (s: Success) => boolean = () => true): Promise<void> {
    let streak = 0;
    let probeFailures = this.probeFailures;
    return this.next(
      (s) => {
        if (s.source !== 'probe') return false;
        if (this.probeFailures !== probeFailures || !pred(s)) {
          probeFailures = this.probeFailures;
          streak = pred(s) ? 1 : 0;
          return false;
        }
        return ++streak >= n;
      },
      `${n} fresh connections in a row answered`,
      timeoutMs,
    );
  }

  get probeFailures(): number {
    return this.failures.filter((f) => f.source === 'probe').length;
  }
}

const errorText = (err: unknown) => `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`.trim();

/** `connections` keep-alive connections, each sending the next request as soon as the previous one is answered. */
export class KeepAliveLoad {
  readonly #clients: Client[] = [];
  readonly #loops: Promise<void>[] = [];
  #running = true;

  constructor(
    readonly traffic: Traffic,
    origin: string,
    connections: number,
  ) {
    for (let i = 0; i < connections; i++) {
      const client = new Client(origin, {
        pipelining: 1,
        keepAliveTimeout: 600_000,
        keepAliveMaxTimeout: 600_000,
        headersTimeout: 5_000,
        bodyTimeout: 5_000,
      });
      this.#clients.push(client);
      this.#loops.push(this.#loop(client));
    }
  }

  async #loop(client: Client): Promise<void> {
    let lastPid: number | undefined;
    client.on('disconnect', () => (lastPid = undefined));
    while (this.#running) {
      this.traffic.sent++;
      const heldBy = lastPid;
      try {
        const res = await client.request({ path: '/', method: 'GET' });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        lastPid = Number(res.headers['x-pid']);
        this.traffic.success({ source: 'keep-alive', at: Date.now(), pid: lastPid });
      } catch (err) {
        this.traffic.failures.push({ source: 'keep-alive', at: Date.now(), lastPid: heldBy, connected: true, error: errorText(err) });
        lastPid = undefined;
        // A refused reconnect fails at once: pace the retries so a dead port is not spun on.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    await Promise.all(this.#clients.map((c) => c.destroy()));
  }
}

/** A new connection every `everyMs` (at most `concurrency` at once), one request each, `connection: close`. */
export class Prober {
  readonly #timer: NodeJS.Timeout;
  #inflight = 0;
  #idle: (() => void) | undefined;

  constructor(
    readonly traffic: Traffic,
    readonly port: number,
    readonly everyMs = 5,
    readonly concurrency = 4,
    readonly timeoutMs = 3_000,
  ) {
    this.#timer = setInterval(() => {
      if (this.#inflight < concurrency) this.#probe();
    }, everyMs);
  }

  #probe(): void {
    this.#inflight++;
    this.traffic.sent++;
    let connected = false;
    let settled = false;
    const finish = (pid: number | undefined, err?: unknown) => {
      if (settled) return;
      settled = true;
      this.#inflight--;
      if (pid !== undefined) this.traffic.success({ source: 'probe', at: Date.now(), pid });
      else this.traffic.failures.push({ source: 'probe', at: Date.now(), lastPid: undefined, connected, error: errorText(err) });
      if (this.#inflight === 0) this.#idle?.();
    };
    const req = http.get({
      host: '127.0.0.1',
      port: this.port,
      path: '/',
      agent: false,
      headers: { connection: 'close' },
      timeout: this.timeoutMs,
    });
    req.on('socket', (s) => s.once('connect', () => (connected = true)));
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'PROBE_TIMEOUT' })));
    req.on('error', (err) => finish(undefined, err));
    req.on('response', (res) => {
      res.resume();
      res.on('error', (err) => finish(undefined, err));
      res.on('end', () => {
        if (res.statusCode === 200) finish(Number(res.headers['x-pid']));
        else finish(undefined, new Error(`status ${res.statusCode}`));
      });
    });
  }

  /** Stops probing; resolves once the probes in flight have ended. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#inflight > 0) await new Promise<void>((r) => (this.#idle = r));
  }
}
