import assert from 'node:assert/strict';
import { once } from 'node:events';
import WebSocket from 'ws';

/** One client of {@link EchoClients}. */
interface EchoClient {
  ws: WebSocket;
  id: number;
  sent: number;
  received: number;
  problems: string[];
  caughtUp: (() => void) | undefined;
}

/**
 * `n` WebSocket clients of an echo server, each sending numbered messages
 * every few ms and checking that every echo comes back in order. A close or
 * an error counts as a problem.
 */
export class EchoClients {
  readonly #clients: EchoClient[];
  #running = true;
  #senders: Promise<void>[] = [];

  private constructor(clients: EchoClient[], intervalMs: number) {
    this.#clients = clients;
    this.#senders = clients.map(async (c) => {
      while (this.#running) {
        c.ws.send(`${c.id}:${c.sent++}`);
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    });
  }

  /**
   * Connects `n` clients to `url` and starts them sending, each every
   * `intervalMs` (default 5). `reply` gives the answer expected for a message
   * (default: the message itself).
   */
  static async open(
    url: string,
    n: number,
    options: { intervalMs?: number; reply?: (message: string) => string } = {},
  ): Promise<EchoClients> {
    const reply = options.reply ?? ((m: string) => m);
    const clients = await Promise.all(
      Array.from({ length: n }, async (_, id) => {
        const ws = new WebSocket(url);
        const c: EchoClient = { ws, id, sent: 0, received: 0, problems: [], caughtUp: undefined };
        ws.on('message', (data) => {
          const expected = reply(`${id}:${c.received}`);
          if (data.toString() !== expected) c.problems.push(`got ${data.toString()} expected ${expected}`);
          c.received++;
          if (c.received >= c.sent) c.caughtUp?.();
        });
        const problem = (p: string) => {
          c.problems.push(p);
          c.caughtUp?.();
        };
        ws.on('close', (code) => problem(`closed ${code}`));
        ws.on('error', (err) => problem(`error ${err.message}`));
        await once(ws, 'open');
        return c;
      }),
    );
    return new EchoClients(clients, options.intervalMs ?? 5);
  }

  /** Messages sent so far by all clients. */
  get sent(): number {
    return this.#clients.reduce((n, c) => n + c.sent, 0);
  }

  /** Stops sending, waits for every echo, asserts none was lost, reordered or closed, and closes the clients. */
  async finish(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#senders);
    await Promise.all(
      this.#clients.map((c) => (c.received >= c.sent || c.problems.length > 0 ? undefined : new Promise<void>((r) => (c.caughtUp = r)))),
    );
    for (const c of this.#clients) {
      assert.deepEqual(c.problems, [], `client ${c.id}`);
      assert.equal(c.received, c.sent, `client ${c.id}: every echo came back`);
    }
  }

  /** Drops every connection (after {@link EchoClients.finish}). */
  close(): void {
    for (const c of this.#clients) c.ws.terminate();
  }
}
