import assert from 'node:assert/strict';
import { Client, Pool } from 'undici';

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
  readonly result: LoadResult = { sent: 0, ok: 0, failed: 0, errors: [], generations: new Map(), pids: new Set() };
  /** TCP connections the pool opened so far (its 'connect' events): each reconnect counts. */
  connects = 0;
  readonly #pool: Pool;
  #running = true;
  readonly #workers: Promise<void>[] = [];
  #onResponse: ((generation: number) => void) | undefined;
  readonly #reset: boolean;
  #stopped: Promise<LoadResult> | undefined;

  /** With `reset`, every request closes its connection: each one is a fresh connect (connection churn). */
  constructor(origin: string, connections = 64, pathName = '/', options: { reset?: boolean } = {}) {
    this.#pool = new Pool(origin, { connections, pipelining: 1 });
    this.#pool.on('connect', () => this.connects++);
    this.#reset = options.reset ?? false;
    for (let i = 0; i < connections; i++) this.#workers.push(this.#worker(pathName));
  }

  /** Resolves once a response from a generation satisfying `pred` arrived. */
  waitForGeneration(pred: (g: number) => boolean): Promise<number> {
    for (const g of this.result.generations.keys()) if (pred(g)) return Promise.resolve(g);
    return new Promise((resolve) => {
      const prev = this.#onResponse;
      this.#onResponse = (g) => {
        prev?.(g);
        if (pred(g)) {
          this.#onResponse = prev;
          resolve(g);
        }
      };
    });
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
        this.result.generations.set(g, (this.result.generations.get(g) ?? 0) + 1);
        this.result.pids.add(Number(res.headers['x-pid']));
        this.result.ok++;
        this.#onResponse?.(g);
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

/** `n` requests, each on a new connection: proves the listener still accepts. */
export async function freshRequests(origin: string, n: number): Promise<number[]> {
  const generations: number[] = [];
  for (let i = 0; i < n; i++) {
    const client = new Client(origin);
    try {
      const res = await client.request({ path: '/', method: 'GET', headers: { connection: 'close' } });
      await res.body.text();
      assert.equal(res.statusCode, 200);
      generations.push(Number(res.headers['x-generation']));
    } finally {
      await client.close();
    }
  }
  return generations;
}
