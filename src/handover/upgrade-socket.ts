import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BatonError } from '../core/errors.js';
import type { UnixChannel } from '../native/unix-channel.js';
import { UnixListener } from '../native/unix-listener.js';

/**
 * The default directory of upgrade sockets: `$XDG_RUNTIME_DIR/baton`, else
 * `<tmpdir>/baton-<uid>`.
 */
export function defaultSocketDir(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? path.join(runtime, 'baton') : path.join(os.tmpdir(), `baton-${process.getuid?.() ?? 0}`);
}

/**
 * Creates `dir` with mode 0700 if missing, and checks that it is a real
 * directory (not a symlink), owned by this uid, with no group or other bits.
 * Throws ERR_BATON_SOCKET_DIR_INSECURE naming the directory otherwise: a
 * socket in a directory others can enter could be replaced by theirs.
 */
export function ensurePrivateDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory()) {
    throw new BatonError('ERR_BATON_SOCKET_DIR_INSECURE', `upgrade socket directory ${dir} is not a directory`);
  }
  if (st.uid !== uid) {
    throw new BatonError(
      'ERR_BATON_SOCKET_DIR_INSECURE',
      `upgrade socket directory ${dir} is owned by uid ${st.uid}, not by this process's uid ${uid}`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new BatonError(
      'ERR_BATON_SOCKET_DIR_INSECURE',
      `upgrade socket directory ${dir} has mode 0${(st.mode & 0o777).toString(8)}; it must be 0700 (chmod 700 ${dir})`,
    );
  }
}

/**
 * The upgrade socket of one generation: a unix stream socket of mode 0600 in a
 * 0700 directory, where successors connect.
 *
 * It is bound at a temporary name and renamed onto the public path only when
 * this generation becomes the one serving: the rename atomically replaces the
 * predecessor's socket file, so at every moment the path reaches exactly one
 * live generation. {@link UpgradeSocket.close} unlinks the path only if it
 * still names this socket (a successor may have renamed its own over it).
 */
export class UpgradeSocket {
  readonly path: string;
  readonly #listener: UnixListener;
  readonly #tmp: string;
  #published = false;
  #ino: number | undefined;

  private constructor(publicPath: string, tmp: string, listener: UnixListener) {
    this.path = publicPath;
    this.#tmp = tmp;
    this.#listener = listener;
  }

  /**
   * Binds (not yet published) a socket for `publicPath`; connections are
   * handed to `onConnection`. Accept errors never throw nor crash: out of fds
   * or memory the listener backs off and accepts again (see UnixListener);
   * `onAcceptError` is told the first error of each streak (until an accept
   * succeeds again), and any other error, after which the socket is closed
   * (`closed` true).
   * Throws the bind's system error (ENOSPC, EACCES, …).
   */
  static bind(
    publicPath: string,
    onConnection: (channel: UnixChannel) => void,
    onAcceptError: (err: Error, closed: boolean) => void = () => undefined,
  ): UpgradeSocket {
    ensurePrivateDir(path.dirname(publicPath));
    const tmp = `${publicPath}.${process.pid}.tmp`;
    try {
      fs.unlinkSync(tmp);
    } catch {
      // Usually absent: it only exists if a process with our pid died here.
    }
    const listener = UnixListener.listen(tmp, { mode: 0o600 });
    listener.unref();
    let failing = false;
    listener.on('connection', (channel) => {
      failing = false;
      onConnection(channel);
    });
    listener.on('error', (err) => {
      if (failing && !listener.closed) return;
      failing = true;
      onAcceptError(err, listener.closed);
    });
    return new UpgradeSocket(publicPath, tmp, listener);
  }

  /**
   * Makes this socket the one at the public path (atomic rename over whatever
   * was there). Throws the rename's system error; the socket is then still
   * bound at its temporary name (close it).
   */
  publish(): void {
    if (this.#published) return;
    fs.renameSync(this.#tmp, this.path);
    this.#ino = fs.statSync(this.path).ino;
    this.#published = true;
  }

  /**
   * Stops accepting successors. With `unlink`, also removes the path if it is
   * still ours; a generation handing over passes false, so the path never
   * disappears between its close and the successor's publish. Idempotent.
   */
  close(unlink = true): void {
    this.#listener.close();
    const target = this.#published ? this.path : this.#tmp;
    if (this.#published && !unlink) return;
    try {
      if (!this.#published || fs.statSync(target).ino === this.#ino) fs.unlinkSync(target);
    } catch {
      // Gone already, or replaced by a successor's socket: nothing to remove.
    }
  }
}
