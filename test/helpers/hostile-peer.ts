/**
 * Hostile peers of a real server process: raw conversations on its upgrade
 * socket (bytes and fds exactly as given, then every frame it answers until it
 * closes), and what the server process reports of itself (/stats of
 * test/fixtures/server.ts; /proc/<pid>/fd counted from outside).
 */
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
