/**
 * WebSocket clients of scenario 3 (the `ws` package, in the bench process):
 * N connections, each sending a numbered message every interval and expecting
 * its echo. Every message is accounted for: echoed, lost (sent on a connection
 * that closed before the echo came, or never echoed by the end), duplicated or
 * out of order. A closed connection is not reopened until the bench asks
 * ({@link WsClients.reopen}), so survival across one upgrade can be counted.
 */
import WebSocket from 'ws';

interface Conn {
  id: number;
  ws: WebSocket;
  open: boolean;
  next: number;
  /** Sequence numbers sent and not echoed yet. */
  pending: Set<number>;
  lastEchoed: number;
  timer: NodeJS.Timeout | undefined;
}

/** Totals of a {@link WsClients} run. */
export interface WsTotals {
  sent: number;
  echoed: number;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  /** Connections opened, the first N included. */
  connects: number;
  failedConnects: number;
  /** Close codes seen (1006: no close frame, the connection just ended). */
  closeCodes: Record<string, number>;
}

export class WsClients {
  readonly totals: WsTotals = { sent: 0, echoed: 0, lost: 0, duplicated: 0, outOfOrder: 0, connects: 0, failedConnects: 0, closeCodes: {} };
  readonly #conns: Conn[] = [];
  #sending = true;

  constructor(
    readonly url: string,
    readonly count: number,
    readonly intervalMs: number,
  ) {}

  /** Opens the N connections; resolves once all are open (rejects if any fails). */
  async open(): Promise<void> {
    await Promise.all(Array.from({ length: this.count }, (_, id) => this.#connect(id)));
  }

  #connect(id: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: false });
      const c: Conn = { id, ws, open: false, next: 0, pending: new Set(), lastEchoed: -1, timer: undefined };
      this.#conns[id] = c;
      ws.on('open', () => {
        c.open = true;
        this.totals.connects++;
        // Spread the connections' messages over the interval.
        const first = setTimeout(
          () => {
            this.#send(c);
            c.timer = setInterval(() => this.#send(c), this.intervalMs);
          },
          (id * this.intervalMs) / this.count,
        );
        c.timer = first;
        resolve();
      });
      ws.on('message', (data: Buffer) => {
        const n = Number(data.toString());
        if (!c.pending.delete(n)) this.totals.duplicated++;
        else {
          this.totals.echoed++;
          if (n < c.lastEchoed) this.totals.outOfOrder++;
          c.lastEchoed = Math.max(c.lastEchoed, n);
        }
      });
      ws.on('error', () => undefined);
      ws.on('close', (code) => {
        if (!c.open) {
          this.totals.failedConnects++;
          reject(new Error(`WebSocket ${id} could not open (${code})`));
          return;
        }
        c.open = false;
        clearTimeout(c.timer);
        clearInterval(c.timer);
        this.totals.closeCodes[code] = (this.totals.closeCodes[code] ?? 0) + 1;
        this.totals.lost += c.pending.size;
        c.pending.clear();
      });
    });
  }

  #send(c: Conn): void {
    if (!this.#sending || !c.open || c.ws.readyState !== WebSocket.OPEN) return;
    const n = c.next++;
    c.pending.add(n);
    this.totals.sent++;
    c.ws.send(String(n));
  }

  /** Ids of the connections open now. */
  openIds(): number[] {
    return this.#conns.filter((c) => c.open).map((c) => c.id);
  }

  /** Reopens every closed connection (each a fresh connect); returns how many. */
  async reopen(): Promise<number> {
    const closed = this.#conns.filter((c) => !c.open);
    await Promise.all(closed.map((c) => this.#connect(c.id)));
    return closed.length;
  }

  /** Stops sending, waits up to `graceMs` for outstanding echoes, counts the rest lost, closes everything. */
  async close(graceMs = 2000): Promise<WsTotals> {
    this.#sending = false;
    const began = Date.now();
    while (this.#conns.some((c) => c.open && c.pending.size > 0) && Date.now() - began < graceMs)
      await new Promise((r) => setTimeout(r, 20));
    for (const c of this.#conns) {
      clearTimeout(c.timer);
      clearInterval(c.timer);
      this.totals.lost += c.pending.size;
      c.pending.clear();
      c.open = false;
      c.ws.removeAllListeners('close');
      c.ws.terminate();
    }
    return this.totals;
  }
}
