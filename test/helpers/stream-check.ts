/**
 * The client side of the fixtures' streaming response
 * (test/fixtures/stream-response.ts): a GET on a connection of its own whose
 * headers are known as soon as they arrive, and a byte-for-byte check of
 * the body.
 */
import http from 'node:http';

/** A GET in flight: its headers once they came, and its whole body once it ended. */
export interface StreamingGet {
  headers: Promise<http.IncomingHttpHeaders>;
  body: Promise<Buffer>;
  /** True once the body ended (or the request failed). */
  readonly done: boolean;
}

/** GET `path` on `port` over a connection of its own (no agent: it stays with the worker that accepted it). */
export function streamingGet(port: number, path: string): StreamingGet {
  let done = false;
  let gotHeaders!: (h: http.IncomingHttpHeaders) => void;
  const headers = new Promise<http.IncomingHttpHeaders>((resolve) => (gotHeaders = resolve));
  const body = new Promise<Buffer>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      gotHeaders(res.headers);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
  }).finally(() => (done = true));
  return {
    headers,
    body,
    get done() {
      return done;
    },
  };
}

/** Whether `body` is the stream's pattern (bytes i % 251) of exactly `length` bytes. */
export function isStreamPattern(body: Buffer, length: number): boolean {
  if (body.length !== length) return false;
  for (let i = 0; i < length; i++) if (body[i] !== i % 251) return false;
  return true;
}
