import assert from 'node:assert/strict';
import { Client, Pool } from 'undici';

/**
 * Responses per generation, and waiters for the first response that
 * satisfies a condition. Shared by the HTTP/1.1 and HTTP/2 load generators.
 */
export class GenerationWatch {
  /** Responses per generation number. */
  readonly counts = new Map<number, number>();
  #waiters: { pred: (g: number) => boolean; resolve: (g: number) => void }[] = [];

  /** Counts one response from generation `g` and resolves the waiters it satisfies. */
  record(g: number): void {
    this.counts.set(g, (this.counts.get(g) ?? 0) + 1);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(g)) return true;
      w.resolve(g);
      return false;
    });
  }

  /** Resolves with the first generation (seen already or to come) satisfying `pred`. */
  waitFor(pred: (g: number) => boolean): Promise<number> {
    for (const g of this.counts.keys()) if (pred(g)) return Promise.resolve(g);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }
}

/** What a load run observed. Every request is counted: ok + failed = sent. */
export interface LoadResult {
  sent: number;
  ok: number;
  failed: number;
  errors: string[];
  /** Responses per generation number (from the x-generation header). */
  generations: Map<number, number>;
  pids: Set<number>;
}

/**
 * Continuous HTTP/1.1 keep-alive load from an independent client (undici):
 * `connections` workers, each sending a request as soon as the previous
 * answered, until stop() is called. Requests are not retried: a failure counts.
 */
export class HttpLoad {
  readonly #watch = new GenerationWatch();
  readonly result: LoadResult = { sent: 0, ok: 0, failed: 0, errors: [], generations: this.#watch.counts, pids: new Set() };
  /** TCP connections the pool opened so far (its 'connect' events): each reconnect counts. */
  connects = 0;
  readonly #pool: Pool;
  #running = true;
  readonly #workers: Promise<void>[] = [];
  readonly #reset: boolean;
  #stopped: Promise<LoadResult> | undefined;

  /** With `reset`, every request closes its connection: each one is a fresh connect (connection churn). */
  constructor(origin: string, connections = 64, pathName = '/', options: { reset?: boolean; connect?: { ca?: Buffer } } = {}) {
    this.#pool = new Pool(origin, { connections, pipelining: 1, ...(options.connect ? { connect: options.connect } : {}) });
    this.#pool.on('connect', () => this.connects++);
    this.#reset = options.reset ?? false;
    for (let i = 0; i < connections; i++) this.#workers.push(this.#worker(pathName));
  }

  /** Resolves once a response from a generation satisfying `pred` arrived. */
  waitForGeneration(pred: (g: number) => boolean): Promise<number> {
    return this.#watch.waitFor(pred);
  }

  /** Resolves once `count` more requests succeeded from now on. */
  waitForMore(count: number): Promise<void> {
    const target = this.result.ok + count;
    return this.waitForGeneration(() => this.result.ok >= target).then(() => undefined);
  }

  async #worker(pathName: string): Promise<void> {
    while (this.#running) {
      this.result.sent++;
      try {
        const res = await this.#pool.request({ path: pathName, method: 'GET', reset: this.#reset });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        const g = Number(res.headers['x-generation']);
        this.result.pids.add(Number(res.headers['x-pid']));
        this.result.ok++;
        this.#watch.record(g);
      } catch (err) {
        this.result.failed++;
        if (this.result.errors.length < 20) this.result.errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
      }
    }
  }

  /** Stops sending, waits for every outstanding request, closes the pool. Idempotent. */
  stop(): Promise<LoadResult> {
    this.#running = false;
    this.#stopped ??= Promise.all(this.#workers)
      .then(() => this.#pool.close())
      .then(() => this.result);
    return this.#stopped;
  }
}

/** One GET on its own connection, closed afterwards so no idle keep-alive outlives it (and delays a drain). */
export async function getOnce(origin: string): Promise<{ status: number; pid: number; generation: number }> {
  const client = new Client(origin);
  try {
    const res = await client.request({ path: '/', method: 'GET', headers: { connection: 'close' } });
    await res.body.text();
    return { status: res.statusCode, pid: Number(res.headers['x-pid']), generation: Number(res.headers['x-generation']) };
  } finally {
    await client.close();
  }
}

/** `n` requests, each on a new connection: proves the listener still accepts. Returns the generations that answered. */
export async function freshRequests(origin: string, n: number): Promise<number[]> {
  const generations: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await getOnce(origin);
    assert.equal(res.status, 200);
    generations.push(res.generation);
  }
  return generations;
}

/**
 * A fresh-connection prober: one GET at a time, each on a new connection,
 * until stop(); proves the listener keeps accepting (a keep-alive load alone
 * would not notice a listener nobody accepts on). Failures are counted, not retried.
 */
export class FreshProber {
  ok = 0;
  failed = 0;
  readonly errors: string[] = [];
  #running = true;
  readonly #done: Promise<void>;

  constructor(origin: string) {
    this.#done = (async () => {
      while (this.#running) {
        try {
          const res = await getOnce(origin);
          if (res.status !== 200) throw new Error(`status ${res.status}`);
          this.ok++;
        } catch (err) {
          this.failed++;
          if (this.errors.length < 20) this.errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
        }
      }
    })();
  }

  /** Stops probing once the request in flight ended. */
  async stop(): Promise<{ ok: number; failed: number; errors: string[] }> {
    this.#running = false;
    await this.#done;
    return { ok: this.ok, failed: this.failed, errors: this.errors };
  }
}

/**
 * Keep-alive load on `origin` that stops by itself at the end of test `t`;
 * resolves once generation 1 answered, so the load is known to flow.
 */
export async function loadOn(t: { after(fn: () => unknown): void }, origin: string, connections = 64): Promise<HttpLoad> {
  const load = new HttpLoad(origin, connections);
  t.after(() => load.stop());
  await load.waitForGeneration((g) => g === 1);
  return load;
}
