/**
 * Idle keep-alive clients of scenario 4: N undici Clients, one connection
 * each, as a well-behaved HTTP/1.1 client keeps them — a connection the server
 * closed while idle is noticed and reopened before the next request (a fresh
 * connect, not a failure); a request the connection dies under fails (undici
 * does not retry). Their keep-alive timeout is set long so none of them closes
 * a connection on its own during the run.
 */
import { Client } from 'undici';

/** A use not answered within this counts as failed (undici's UND_ERR_HEADERS_TIMEOUT). */
const REQUEST_TIMEOUT_MS = 10_000;

/** What one round of uses observed. */
export interface IdleRound {
  ok: number;
  failed: number;
  non2xx: number;
  /** Uses that had to open a new connection first (the old one was closed by the server). */
  freshConnects: number;
  errors: Record<string, number>;
}

export class IdleClients {
  readonly #clients: { client: Client; connects: number }[] = [];

  constructor(
    readonly origin: string,
    readonly count: number,
  ) {
    for (let i = 0; i < count; i++) {
      const client = new Client(origin, {
        pipelining: 1,
        keepAliveTimeout: 600_000,
        keepAliveMaxTimeout: 600_000,
        keepAliveTimeoutThreshold: 0,
        // A request nobody answers is a failure, not a hung bench.
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
      const entry = { client, connects: 0 };
      client.on('connect', () => entry.connects++);
      this.#clients.push(entry);
    }
  }

  /**
   * Uses every connection once, the uses spread evenly over `spreadMs`
   * (all at once when 0), and resolves with what they observed.
   */
  async use(spreadMs: number): Promise<IdleRound> {
    const round: IdleRound = { ok: 0, failed: 0, non2xx: 0, freshConnects: 0, errors: {} };
    await Promise.all(
      this.#clients.map(async (entry, i) => {
        if (spreadMs > 0) await new Promise((r) => setTimeout(r, (i * spreadMs) / this.count));
        const connectsBefore = entry.connects;
        try {
          const res = await entry.client.request({ path: '/', method: 'GET' });
          await res.body.text();
          if (res.statusCode >= 400) round.non2xx++;
          else round.ok++;
        } catch (err) {
          round.failed++;
          const code = (err as { code?: string }).code ?? (err as Error).message;
          round.errors[code] = (round.errors[code] ?? 0) + 1;
        }
        if (entry.connects > connectsBefore) round.freshConnects++;
      }),
    );
    return round;
  }

  async close(): Promise<void> {
    await Promise.all(this.#clients.map((c) => c.client.destroy()));
  }
}
