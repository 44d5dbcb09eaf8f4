/**
 * Hostile peers of a real server process: raw conversations on its upgrade
 * socket (bytes and fds exactly as given, then every frame it answers until it
 * closes), and what the server process reports of itself (/stats of
 * test/fixtures/server.ts; /proc/<pid>/fd counted from outside).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { UnixChannel } from '../../src/native/index.js';
import { FrameDecoder, type ErrorPayload, type Frame } from '../../src/protocol/frames.js';

/** Open fds of `pid`, counted from outside. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * `pid`'s fd count once it is at most `expected`, or whatever it is after
 * `timeoutMs`: a connection the test just closed may take a moment to close
 * on the server's side too.
 */
export async function settledFdCount(pid: number, expected: number, timeoutMs = 5_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const n = fdCount(pid);
    if (n <= expected || performance.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Asserts that `pid` holds no more fds than `before` once they settled. Fewer is fine: an fd open
 * when `before` was counted (a keep-alive socket, a module being read) may have closed since.
 */
export async function assertFdsFlat(pid: number, before: number, what = 'fds flat'): Promise<void> {
  const after = await settledFdCount(pid, before);
  assert.ok(after <= before, `${what}: ${after} fds, ${before} before`);
}

/** What the fixture server says of itself: open fds, RSS, longest event-loop delay since the last call. */
export async function serverStats(origin: string): Promise<{ fds: number; rss: number; loopDelayMaxMs: number }> {
  const res = await fetch(`${origin}/stats`);
  return (await res.json()) as { fds: number; rss: number; loopDelayMaxMs: number };
}

/**
 * One conversation on the upgrade socket at `socketPath`: sends each of
 * `writes` (bytes, and fds the kernel copies into the message; ours stay
 * open), then collects the frames the server sends until it closes the
 * connection or `timeoutMs` passes. Fds the server sends are closed here.
 */
export async function converse(
  socketPath: string,
  writes: { bytes: Buffer; fds?: number[] }[],
  timeoutMs = 10_000,
): Promise<{ frames: Frame[]; closed: boolean }> {
  const channel = UnixChannel.connect(socketPath);
  const decoder = new FrameDecoder({ maxBytes: 64 * 1024 * 1024, closeFd: () => undefined });
  const frames: Frame[] = [];
  let broken = false;
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    channel.on('data', (chunk, fds) => {
      if (!broken) {
        try {
          frames.push(...decoder.push(chunk, fds));
          return;
        } catch {
          broken = true;
        }
      }
      for (const fd of fds) closeFdQuietly(fd);
    });
    channel.on('end', done);
    channel.on('error', done); // ECONNRESET: it closed with our bytes unread
    for (const w of writes) channel.write(w.bytes, w.fds ?? []).catch(() => undefined);
  });
  channel.close();
  for (const f of frames) for (const fd of f.fds) closeFdQuietly(fd);
  decoder.dispose();
  return { frames, closed };
}

/** The payload of the Error frame among `frames` (the server's last word), or undefined. */
export function errorOf(frames: Frame[]): ErrorPayload | undefined {
  return frames.find((f) => f.type === 7)?.payload as ErrorPayload | undefined;
}

function closeFdQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed.
  }
}

/**
 * A conversation with a server on a unix socket, frame by frame: `send`
 * writes bytes with fds (ours stay open); `until` waits for a frame the
 * server sent (or its close); fds the server sends are closed as they come.
 */
export class Conversation {
  readonly channel: UnixChannel;
  readonly frames: Frame[] = [];
  #decoder = new FrameDecoder({ maxBytes: 64 * 1024 * 1024, closeFd: closeFdQuietly });
  #broken = false;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(channel: UnixChannel) {
    this.channel = channel;
    channel.on('data', (chunk, fds) => {
      if (this.#broken) {
        for (const fd of fds) closeFdQuietly(fd);
        return;
      }
      try {
        for (const f of this.#decoder.push(chunk, fds)) {
          for (const fd of f.fds) closeFdQuietly(fd);
          this.frames.push(f);
        }
      } catch {
        this.#broken = true;
      }
      this.#wake?.();
    });
    const gone = () => {
      this.#closed = true;
      this.#wake?.();
    };
    channel.on('end', gone);
    channel.on('error', gone);
  }

  static connect(socketPath: string): Conversation {
    return new Conversation(UnixChannel.connect(socketPath));
  }

  send(bytes: Buffer, fds: number[] = []): void {
    this.channel.write(bytes, fds).catch(() => undefined);
  }

  /** Resolves true once a frame of `type` arrived, false when the server closed first; rejects after `timeoutMs`. */
  async until(type: number | undefined, timeoutMs = 10_000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (type !== undefined && this.frames.some((f) => f.type === type)) return true;
      if (this.#closed) return false;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no ${type === undefined ? 'close' : `frame of type ${type}`} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  close(): void {
    this.channel.close();
    this.#decoder.dispose();
  }
}
