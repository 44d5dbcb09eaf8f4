/**
 * A UDP echo client for the datagram handover tests: it sends numbered
 * datagrams at a steady rate to a fixture's UDP echo (which answers each with
 * `<generation> <datagram>`) and counts every reply, so a test can tell each
 * lost and each duplicated datagram, and which generation answered each one.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';

/** One reply: the datagram's number and the generation that answered it. */
export interface UdpReply {
  seq: number;
  generation: number;
}

export class UdpEchoClient {
  readonly socket: dgram.Socket;
  /** Datagrams sent so far; the next one is numbered `sent`. */
  sent = 0;
  /** The generations that answered each datagram, by number (more than one: a duplicate). */
  readonly answers = new Map<number, number[]>();
  /** Anything the client must never see: a socket error, a reply it cannot parse, a reply to a datagram never sent. */
  readonly problems: string[] = [];
  readonly #label: string;
  #timer: NodeJS.Timeout | undefined;
  #waiters: { match: (r: UdpReply) => boolean; resolve: () => void }[] = [];

  private constructor(socket: dgram.Socket, label: string) {
    this.socket = socket;
    this.#label = label;
    socket.on('error', (err) => this.problems.push(`${label}: socket error ${err.message}`));
    socket.on('message', (msg) => this.#onReply(msg.toString()));
  }

  /** A client bound to 127.0.0.1 (port 0: any), ready to send. */
  static async open(label: string): Promise<UdpEchoClient> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new UdpEchoClient(socket, label);
  }

  /** The client's own port (what a connected server socket is connected to). */
  get port(): number {
    return this.socket.address().port;
  }

  /** Sends datagram `sent`, `sent + 1`, … to 127.0.0.1:`port`, one every `tickMs` (its own timer: load, not coordination). */
  start(port: number, tickMs: number): void {
    this.#timer = setInterval(() => {
      const seq = this.sent++;
      this.socket.send(`${this.#label}:${seq}`, port, '127.0.0.1');
    }, tickMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  close(): void {
    this.stop();
    this.socket.close();
  }

  /** Resolves at the first reply (already seen or future) that matches; rejects after `timeoutMs` naming `what`. */
  waitReply(match: (r: UdpReply) => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    for (const [seq, gens] of this.answers) if (gens.some((generation) => match({ seq, generation }))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`${this.#label}: timed out waiting for ${what} (${this.sent} sent, ${this.answers.size} answered)`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push({ match, resolve: done });
    });
  }

  /** Resolves once every datagram sent has an answer (call after stop()). */
  settled(timeoutMs = 30_000): Promise<void> {
    const last = this.sent - 1;
    return this.waitReply(() => this.answers.size === this.sent, `answers to all ${last + 1} datagrams`, timeoutMs).catch((err) => {
      throw new Error(`${(err as Error).message}; missing: ${this.missing().slice(0, 20).join(', ')}`);
    });
  }

  /** Numbers of datagrams sent and never answered. */
  missing(): number[] {
    const out: number[] = [];
    for (let seq = 0; seq < this.sent; seq++) if (!this.answers.has(seq)) out.push(seq);
    return out;
  }

  /** Numbers of datagrams answered more than once. */
  duplicated(): number[] {
    return [...this.answers].filter(([, gens]) => gens.length > 1).map(([seq]) => seq);
  }

  #onReply(text: string): void {
    const m = /^(\d+) ([^:]+):(\d+)$/.exec(text);
    if (!m || m[2] !== this.#label) {
      this.problems.push(`${this.#label}: unexpected reply ${JSON.stringify(text)}`);
      return;
    }
    const reply = { generation: Number(m[1]), seq: Number(m[3]) };
    if (reply.seq >= this.sent) this.problems.push(`${this.#label}: reply to datagram ${reply.seq}, never sent`);
    const gens = this.answers.get(reply.seq) ?? [];
    gens.push(reply.generation);
    this.answers.set(reply.seq, gens);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.match(reply)) return true;
      w.resolve();
      return false;
    });
  }
}

/**
 * Asserts a steady stream: `marks` are a client's `sent` read at successive moments (each
 * upgrade's stop, then the end), and datagrams were sent between every two of them (how many
 * depends on the machine).
 */
export function assertSentThroughout(marks: number[], what: string): void {
  const all = [0, ...marks];
  assert.ok(
    all.every((m, i) => i === 0 || m > all[i - 1]!),
    `${what}: datagrams sent by each upgrade's stop: ${JSON.stringify(all)}`,
  );
}
