/**
 * The master's control socket: `<runDir>/<name>-master-<pid>.sock` (mode 0600
 * in the 0700 run directory; the peer's uid is checked with SO_PEERCRED). One
 * JSON request per line, one JSON answer per line: `{"cmd":"status"}` →
 * `{"ok":true,"status":{…}}` or `{"ok":false,"error":"…"}`.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { BatonError } from '../core/errors.js';
import { ControlLimits } from '../core/options.js';
import { peerCredentials } from '../native/socket-info.js';
import { handleFd } from '../native/internals.js';

/** The schema of a request line: one JSON object naming a command. */
const controlRequestSchema = z.object({ cmd: z.literal('status') });

/** A request on the control socket. */
export type ControlRequest = z.infer<typeof controlRequestSchema>;

/** The control socket path of master `pid`. */
export function controlSocketPath(runDir: string, name: string, pid: number): string {
  return path.join(runDir, `${name}-master-${pid}.sock`);
}

/**
 * Decodes one request line: JSON, then the request schema. Throws an Error
 * whose message names what is wrong (the field and why), for the answer.
 */
export function parseControlRequest(line: string): ControlRequest {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    throw new Error(`not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  const result = controlRequestSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new Error(`${issue.path.length > 0 ? issue.path.join('.') : '(request)'}: ${issue.message}`);
  }
  return result.data;
}

/**
 * The master's end: answers requests with `handler`. Owns its socket file and removes it on close.
 *
 * Each connection carries one request line and gets one answer line, then is
 * closed. A connection is bounded in time (`requestTimeoutMs` from accept to
 * answer: a peer that sends slowly or never gets an error line and is
 * closed), in size (`maxRequestBytes`) and in number (`maxConnections` at
 * once; the kernel hands further ones over and they are closed at once), so
 * no peer can hold the master's fds or memory (ControlLimits in
 * src/core/options.ts).
 */
export class ControlServer {
  readonly path: string;
  readonly #server: net.Server;

  private constructor(file: string, server: net.Server) {
    this.path = file;
    this.#server = server;
  }

  /** Listens at `file` (a stale file there is replaced). */
  static async listen(
    file: string,
    handler: (req: ControlRequest) => Promise<unknown>,
    limits: { requestTimeoutMs: number; maxConnections: number; maxRequestBytes: number } = ControlLimits,
  ): Promise<ControlServer> {
    fs.rmSync(file, { force: true });
    // Half-open allowed: a client may end its side after the request and still read the answer.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => serve(socket, handler, limits));
    server.maxConnections = limits.maxConnections;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: file }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(file, 0o600);
    server.unref();
    return new ControlServer(file, server);
  }

  close(): void {
    this.#server.close();
    fs.rmSync(this.path, { force: true });
  }
}

function serve(
  socket: net.Socket,
  handler: (req: ControlRequest) => Promise<unknown>,
  limits: { requestTimeoutMs: number; maxRequestBytes: number },
): void {
  socket.on('error', () => undefined);
  const fd = handleFd(socket);
  const uid = process.getuid?.() ?? 0;
  let answered = false;
  let requested = false;
  /**
   * Answers once and ends our side. Reading goes on (what comes is dropped) so the
   * peer's end is seen and the socket closes; a peer that never closes is cut off at the deadline.
   */
  const answer = (reply: object) => {
    if (answered) return;
    answered = true;
    socket.end(`${JSON.stringify(reply)}\n`);
  };
  const deadline = setTimeout(() => {
    if (answered) socket.destroy();
    else {
      answer({ ok: false, error: `no complete request within ${limits.requestTimeoutMs} ms` });
      // The peer gets one more deadline to read the answer, then its fd is closed.
      setTimeout(() => socket.destroy(), limits.requestTimeoutMs).unref();
    }
  }, limits.requestTimeoutMs);
  deadline.unref();
  socket.on('close', () => clearTimeout(deadline));
  try {
    const peer = peerCredentials(fd ?? -1);
    if (peer.uid !== uid && peer.uid !== 0) {
      answer({ ok: false, error: `uid ${peer.uid} may not control this master (uid ${uid})` });
      return;
    }
  } catch {
    socket.destroy();
    return;
  }
  socket.on('end', () => {
    if (!requested) answer({ ok: false, error: 'the request line ended without a newline' });
    else if (answered) socket.end();
  });
  const chunks: Buffer[] = [];
  let size = 0;
  socket.on('data', (chunk: Buffer) => {
    if (answered || requested) return;
    const nl = chunk.indexOf(0x0a);
    chunks.push(nl < 0 ? chunk : chunk.subarray(0, nl));
    size += nl < 0 ? chunk.length : nl;
    if (size > limits.maxRequestBytes) {
      answer({ ok: false, error: `request too large (over ${limits.maxRequestBytes} bytes)` });
      return;
    }
    if (nl < 0) return;
    let req: ControlRequest;
    try {
      req = parseControlRequest(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      answer({ ok: false, error: `bad request: ${(err as Error).message}` });
      return;
    }
    requested = true;
    handler(req).then(
      (status) => answer({ ok: true, status }),
      (err: unknown) => answer({ ok: false, error: (err as Error).message }),
    );
  });
}

/**
 * Sends one request to the control socket at `file` and resolves with the
 * answer's `status`. Rejects with ERR_BATON_NO_MASTER when nobody listens
 * there, ERR_BATON_CONTROL when the master refuses or does not answer in time.
 */
export function controlRequest(file: string, req: ControlRequest, timeoutMs = 5_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: file });
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new BatonError('ERR_BATON_CONTROL', `${file}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(new BatonError('ERR_BATON_NO_MASTER', `no master answers at ${file} (${err.code})`, { cause: err }));
      } else reject(err);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        const a = JSON.parse(answer) as { ok: boolean; status?: unknown; error?: string };
        if (a.ok) resolve(a.status);
        else reject(new BatonError('ERR_BATON_CONTROL', `${file}: ${a.error}`));
      } catch {
        reject(new BatonError('ERR_BATON_CONTROL', `${file}: malformed answer ${JSON.stringify(answer.slice(0, 200))}`));
      }
    });
  });
}
