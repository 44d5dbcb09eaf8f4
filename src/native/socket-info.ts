/**
 * Small fd utilities over the native addon: socket introspection, peer credentials, close
 * and dup. All of them throw a Node-style system error (see `system-error.ts`) on failure.
 *
 * @module
 */
import { loadBinding, type SocketDescription } from './binding.js';
import { check } from './system-error.js';

/** Credentials of the process on the other end of a unix socket (SO_PEERCRED). */
export interface PeerCredentials {
  /** Peer's pid at connect()/socketpair() time. */
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** What a socket fd is (the addon's description, see native/binding.ts). */
export type { SocketDescription } from './binding.js';

/**
 * Credentials of the peer of the connected unix socket `fd` (fd is only inspected).
 *
 * @throws system error with syscall 'getsockopt' (e.g. ENOTSOCK, EBADF).
 */
export function peerCredentials(fd: number): PeerCredentials {
  return check(loadBinding().peerCredentials(fd), 'getsockopt');
}

/**
 * Describe the socket `fd` (only inspected, never closed).
 *
 * @throws system error with syscall 'getsockopt': ENOTSOCK for a non-socket, EBADF for a
 *   closed fd.
 */
export function describeSocket(fd: number): SocketDescription {
  return check(loadBinding().describeSocket(fd), 'getsockopt');
}

/**
 * Close an fd this process owns (one received from a channel, a `dupFd` result, …). Do not
 * use it on an fd that Node or another object still owns.
 *
 * @throws system error with syscall 'close' (e.g. EBADF).
 */
export function closeFd(fd: number): void {
  check(loadBinding().close(fd), 'close');
}

/**
 * Duplicate `fd` into a new fd ≥ 3 with FD_CLOEXEC set. The caller owns the copy and must
 * close it (or hand it on); the original is untouched.
 *
 * @throws system error with syscall 'fcntl' (e.g. EBADF, EMFILE).
 */
export function dupFd(fd: number): number {
  return check(loadBinding().dup(fd), 'fcntl');
}

/**
 * Grows this process's fd table now to hold `slots` fds (at most RLIMIT_NOFILE), for a
 * process about to receive that many. The kernel grows the table by doubling as fds are
 * allocated, and in a multi-threaded process such as Node each growth waits for an RCU grace
 * period (5–20 ms): receiving 10k fds into a small table costs about ten of them, ~100 ms.
 * Grown ahead of time, it costs one, off the critical path. `fd` is any open fd; it is only
 * duplicated (the copy is closed at once). Returns the slots available.
 *
 * @throws system error with syscall 'fcntl' (EMFILE when no slot that high is free, EBADF).
 */
export function growFdTable(fd: number, slots: number): number {
  return check(loadBinding().growFdTable(fd, Math.min(Math.max(0, Math.ceil(slots)), 0x7fffffff)), 'fcntl');
}

/** Closes an fd on a cleanup path, ignoring failure (EBADF: already closed). */
export function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // Already closed: nothing left to release.
  }
}
