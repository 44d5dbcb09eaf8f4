/**
 * The master's control socket: `<runDir>/<name>-master-<pid>.sock` (mode 0600
 * in the 0700 run directory; the peer's uid is checked with SO_PEERCRED). One
 * JSON request per line, one JSON answer per line: `{"cmd":"status"}` →
 * `{"ok":true,"status":{…}}` or `{"ok":false,"error":"…"}`.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BatonError } from '../core/errors.js';
import { peerCredentials } from '../native/socket-info.js';

/** A request on the control socket. */
export type ControlRequest = { cmd: 'status' };

/** The control socket path of master `pid`. */
export function controlSocketPath(runDir: string, name: string, pid: number): string {
  return path.join(runDir, `${name}-master-${pid}.sock`);
}

/** Largest request line accepted. */
const MAX_REQUEST_BYTES = 64 * 1024;

/** The master's end: answers requests with `handler`. Owns its socket file and removes it on close. */
export class ControlServer {
  readonly path: string;
  readonly #server: net.Server;

  private constructor(file: string, server: net.Server) {
    this.path = file;
    this.#server = server;
  }

  /** Listens at `file` (a stale file there is replaced). */
  static async listen(file: string, handler: (req: ControlRequest) => Promise<unknown>): Promise<ControlServer> {
    fs.rmSync(file, { force: true });
    const server = net.createServer((socket) => serve(socket, handler));
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

function serve(socket: net.Socket, handler: (req: ControlRequest) => Promise<unknown>): void {
  socket.on('error', () => undefined);
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const uid = process.getuid?.() ?? 0;
  try {
    const peer = peerCredentials(fd ?? -1);
    if (peer.uid !== uid && peer.uid !== 0) {
      socket.end(`${JSON.stringify({ ok: false, error: `uid ${peer.uid} may not control this master (uid ${uid})` })}\n`);
      return;
    }
  } catch {
    socket.destroy();
    return;
  }
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    if (buffered.length > MAX_REQUEST_BYTES) {
      socket.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`);
      return;
    }
    const nl = buffered.indexOf('\n');
    if (nl < 0) return;
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
      if (req?.cmd !== 'status') throw new Error(`unknown command ${JSON.stringify((req as { cmd?: unknown })?.cmd)}`);
    } catch (err) {
      socket.end(`${JSON.stringify({ ok: false, error: `bad request: ${(err as Error).message}` })}\n`);
      return;
    }
    handler(req).then(
      (status) => socket.end(`${JSON.stringify({ ok: true, status })}\n`),
      (err: unknown) => socket.end(`${JSON.stringify({ ok: false, error: (err as Error).message })}\n`),
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
