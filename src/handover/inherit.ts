import { BatonError } from '../core/errors.js';
import { closeQuietly, describeSocket, dupFd, type SocketDescription } from '../native/socket-info.js';

/** First fd of the LISTEN_FDS convention (systemd's SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** Environment variable naming the exec-path channel fd (a unix stream socket to the predecessor). */
export const CHANNEL_FD_ENV = 'BATON_CHANNEL_FD';

// The pool's entries are the listener set's concept (listeners/ sits below handover/).
import type { InheritedListener } from '../listeners/listener-set.js';
export type { InheritedListener };

/**
 * Reads systemd's socket-passing convention (LISTEN_FDS, LISTEN_FDNAMES,
 * LISTEN_PID), which the exec upgrade path also uses. The variables are removed
 * from `env` so they do not leak to this process's own children.
 *
 * LISTEN_PID must equal this process's pid, as systemd requires: otherwise the
 * fds were meant for another process and are left alone.
 *
 * Each fd is validated (a listening stream socket or a bound UDP socket) and moved to a CLOEXEC
 * duplicate, so the app's own child processes never inherit a listener; the
 * original fd number is closed. Returns the listeners, in fd order.
 * Throws ERR_BATON_INHERITED_FD_INVALID naming the fd when one is neither a
 * listening stream socket nor a bound UDP socket.
 */
export function takeListenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): InheritedListener[] {
  const count = env.LISTEN_FDS;
  const listenPid = env.LISTEN_PID;
  const names = env.LISTEN_FDNAMES;
  if (count === undefined) return [];
  if (listenPid !== undefined && Number(listenPid) !== pid) return [];
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  const n = Number(count);
  if (!Number.isInteger(n) || n < 0 || n > 4096) {
    throw new BatonError('ERR_BATON_INHERITED_FD_INVALID', `LISTEN_FDS=${JSON.stringify(count)} is not a valid fd count`);
  }
  const nameList = names === undefined ? [] : names.split(':');
  const out: InheritedListener[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const original = LISTEN_FDS_START + i;
      const rawName = nameList[i];
      const name = rawName === undefined || rawName === '' || rawName === 'unknown' ? undefined : rawName;
      out.push(adoptInheritedFd(original, name ?? `LISTEN_FDS fd ${original}`, name));
    }
  } catch (err) {
    for (const l of out) closeQuietly(l.fd);
    throw err;
  }
  return out;
}

/**
 * Validates an fd that should be a listening stream socket or a bound UDP
 * (inet/inet6 datagram) socket and replaces it by
 * a CLOEXEC duplicate (the original number is closed). `what` names it in errors.
 */
export function adoptInheritedFd(fd: number, what: string, name: string | undefined): InheritedListener {
  let description: SocketDescription;
  try {
    description = describeSocket(fd);
  } catch (err) {
    throw new BatonError('ERR_BATON_INHERITED_FD_INVALID', `${what}: fd ${fd} is not a usable socket (${(err as Error).message})`, {
      cause: err,
    });
  }
  const stream =
    description.type === 'stream' &&
    description.listening &&
    (description.family === 'inet' || description.family === 'inet6' || description.family === 'unix');
  // A UDP socket has no listen(): it must be bound (a port), so it receives where its name says.
  const datagram = description.type === 'dgram' && (description.family === 'inet' || description.family === 'inet6') && !!description.port;
  if (!stream && !datagram) {
    throw new BatonError(
      'ERR_BATON_INHERITED_FD_INVALID',
      `${what}: fd ${fd} is a ${description.family} ${description.type} socket that is ${description.type === 'dgram' ? (description.port ? 'bound' : 'not bound') : description.listening ? 'listening' : 'not listening'}; a listening TCP or unix stream socket or a bound UDP socket is required`,
    );
  }
  const copy = dupFd(fd);
  closeQuietly(fd);
  return { name, fd: copy, description };
}
