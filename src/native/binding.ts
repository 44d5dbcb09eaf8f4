/**
 * Loader and raw typings for the `baton_native` Node-API addon (native/baton_native.c).
 *
 * The raw functions follow one convention: a failed syscall comes back as a negative errno
 * (a number), never as an exception; exceptions are thrown only for arguments of the wrong
 * type. Use {@link check} from `system-error.ts` to turn a negative result into a Node-style
 * system error. Every fd the addon creates or receives has FD_CLOEXEC set and every socket it
 * creates is non-blocking. The caller owns every fd a raw function returns and must close it
 * with `close` (or hand it to something that will).
 *
 * @module
 */
import { BatonError } from '../core/errors.js';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Most fds one SCM_RIGHTS message can carry on Linux (the kernel's SCM_MAX_FD). */
export const MAX_FDS_PER_MESSAGE = 253;

/** Opaque poller handle returned by {@link NativeBinding.pollStart}. */
export type PollHandle = { readonly __batonPollHandle: unique symbol };

/**
 * Poll callback: `status` is 0 or a negative errno from libuv; `readable`/`writable` tell
 * which of the wanted events fired. It runs inside an async context, so microtasks queued
 * by it run before the event loop continues.
 */
export type PollCallback = (status: number, readable: boolean, writable: boolean) => void;

/** What a socket fd is, from getsockopt/getsockname. */
export interface SocketDescription {
  readonly family: 'inet' | 'inet6' | 'unix' | 'other';
  readonly type: 'stream' | 'dgram' | 'seqpacket' | 'raw' | 'other';
  /** SO_ACCEPTCONN: true for a socket on which listen() was called. */
  readonly listening: boolean;
  /** Local address (inet/inet6 only), as inet_ntop prints it, e.g. '127.0.0.1' or '::1'. */
  readonly address?: string;
  /** Local port (inet/inet6 only). */
  readonly port?: number;
  /**
   * Local path (unix only): '' for an unnamed socket (socketpair, a client), '@name' for the
   * abstract namespace (trailing NULs dropped: libuv pads abstract names with them),
   * otherwise the filesystem path it was bound to.
   */
  readonly path?: string;
  /** Peer address of a connected inet/inet6 socket (a TCP connection, a connected UDP socket); absent otherwise. */
  readonly peerAddress?: string;
  /** Peer port of a connected inet/inet6 socket; absent otherwise. */
  readonly peerPort?: number;
}

/** Result of a successful {@link NativeBinding.recvmsg}. */
export interface RawReceived {
  /** Bytes written into the buffer; 0 means the peer closed (EOF). */
  readonly bytes: number;
  /** fds that arrived with these bytes, in order, CLOEXEC set; the caller owns them. */
  readonly fds: number[];
  /** True when the kernel dropped fds (MSG_CTRUNC), usually because of RLIMIT_NOFILE. */
  readonly ctrunc: boolean;
}

/** The raw addon API. Every `number` result below 0 is a negative errno. */
export interface NativeBinding {
  /** AF_UNIX SOCK_STREAM pair, non-blocking and CLOEXEC; the caller owns both fds. */
  socketpair(): [number, number] | number;
  /**
   * socket + bind + chmod(path, mode) + listen; returns the listening fd (caller owns it).
   * chmod happens before listen, so no client can connect while the mode is wider. On failure
   * after bind the socket file is left in place (the caller decides whether to unlink it).
   */
  unixListen(path: string, backlog: number, mode: number): number;
  /**
   * Non-blocking connect to a filesystem socket path; never waits, so it may run on the JS thread
   * of a serving process. The caller owns the fd (non-blocking, CLOEXEC). -EAGAIN when the
   * listener's backlog is full (AF_UNIX has no connect in progress: nothing is left open); then
   * try again later, or wait with {@link NativeBinding.unixConnectWait}.
   */
  unixConnect(path: string): number;
  /**
   * Connects to `path` in the libuv thread pool, waiting up to `timeoutMs` (at least 1) for room in
   * the listener's backlog without blocking the JS thread, then calls `callback` on the JS thread
   * with the fd (non-blocking, CLOEXEC; the callback owns it) or a negative errno (-ETIMEDOUT when
   * the backlog stayed full). Returns 0 once queued, or -errno at once for a bad path (no callback
   * then). Each wait holds one thread-pool thread.
   */
  unixConnectWait(path: string, timeoutMs: number, callback: (result: number) => void): number;
  /**
   * Sends `buffer` as one AF_UNIX datagram to `path` (a leading '@' names the abstract
   * namespace) from a fresh socket; returns the bytes sent or -errno.
   */
  datagramSend(path: string, buffer: Uint8Array): number;
  /** A non-blocking CLOEXEC AF_UNIX datagram socket bound at `path` (mode 0600; '@' = abstract); caller owns it. */
  datagramBind(path: string): number;
  /** accept4 (non-blocking, CLOEXEC); -EAGAIN when no connection is pending. */
  accept(fd: number): number;
  /**
   * One sendmsg(MSG_NOSIGNAL) of `buffer[offset, offset + length)` with `fds` (at most 253,
   * needs length ≥ 1 when fds are given, else -EINVAL) attached as SCM_RIGHTS. Returns the
   * bytes sent (possibly fewer than `length`); when it is > 0 the fds went with them. The
   * caller keeps ownership of `fds`: the kernel duplicates them into the message.
   */
  sendmsg(fd: number, buffer: Uint8Array, offset: number, length: number, fds: readonly number[]): number;
  /** One recvmsg(MSG_CMSG_CLOEXEC) into `buffer`; -EAGAIN when nothing is queued. */
  recvmsg(fd: number, buffer: Uint8Array): RawReceived | number;
  /**
   * recv(MSG_PEEK | MSG_DONTWAIT) into `buffer`: what the kernel holds for a connected socket,
   * left in place. Bytes copied, 0 at EOF, -EAGAIN when nothing is queued.
   */
  peek(fd: number, buffer: Uint8Array): number;
  /** close(2); 0 or -errno. */
  close(fd: number): number;
  /** fcntl(F_DUPFD_CLOEXEC, 3): a new fd ≥ 3 that the caller owns. */
  dup(fd: number): number;
  /**
   * Makes this process's fd table hold at least `slots` fds (capped at RLIMIT_NOFILE's soft
   * limit) by duplicating `fd` into the highest slot and closing that copy at once; returns the
   * slots now available. `fd` is only duplicated, never closed.
   */
  growFdTable(fd: number, slots: number): number;
  /**
   * A new epoll instance (CLOEXEC; the caller owns it and closes it with `close`, which drops
   * every registration). Watch it with `pollStart` to learn when one of its fds is ready.
   */
  epollCreate(): number;
  /**
   * Adds `fd` to the set (level-triggered readability: bytes, EOF, hang-up or error; the
   * event's data is the fd number). The fd is not owned by the set: remove it (`epollDel`,
   * `epollTakeReady`) before closing it — the registration lives as long as the open file
   * description, which another process may share.
   */
  epollAdd(epfd: number, fd: number): number;
  /** Removes `fd` from the set. */
  epollDel(epfd: number, fd: number): number;
  /** The fds of the set that are ready now (at most `max`, at most 1024; never waits), each removed from the set. */
  epollTakeReady(epfd: number, max: number): number[] | number;
  /** SO_PEERCRED of a connected unix socket. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number } | number;
  /** Family, type, SO_ACCEPTCONN and local address of a socket fd (-ENOTSOCK otherwise). */
  describeSocket(fd: number): SocketDescription | number;
  /**
   * Watch `fd` for readiness on the Node event loop (libuv uv_poll_t, level-triggered). The
   * poller never closes `fd`: call `pollClose` first, then close the fd. Returns a negative
   * errno when the fd cannot be watched (e.g. -EEXIST if another poller in this thread watches
   * it, -EPERM for a regular file).
   */
  pollStart(fd: number, wantReadable: boolean, wantWritable: boolean, callback: PollCallback): PollHandle | number;
  /** Change the wanted events; neither stops the watcher. -EBADF after `pollClose`. */
  pollUpdate(handle: PollHandle, wantReadable: boolean, wantWritable: boolean): number;
  /** Whether an active watcher keeps the event loop alive (default true). */
  pollRef(handle: PollHandle, ref: boolean): number;
  /** Stop and release the watcher; idempotent; the callback is never called afterwards. */
  pollClose(handle: PollHandle): number;
}

/**
 * The package root: the nearest ancestor of this module's directory that holds both a
 * package.json and binding.gyp (works from `src/native/` and from `dist/src/native/`).
 */
export function findPackageRoot(startDir: string = dirname(fileURLToPath(import.meta.url))): string | undefined {
  let dir = startDir;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** node-gyp-build's resolver: the addon file for this process (`build/Release` first, then `prebuilds/`). */
interface AddonResolver {
  path(dir: string): string;
}

/**
 * This process's platform as the prebuilds name it: `linux-x64 (glibc)`, `linux-arm64 (musl)`.
 * Alpine is musl, as node-gyp-build decides; `LIBC` overrides it there too.
 */
export function platformLabel(): string {
  const libc = process.env.LIBC ?? (existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return `${process.platform}-${process.arch} (${libc})`;
}

/** What to install so that `npm install` builds the addon from source (one sentence for the error). */
const TOOLCHAIN_HINT =
  'install a C toolchain and python3 (Debian/Ubuntu: apt-get install build-essential python3; ' +
  'Alpine: apk add build-base python3; RHEL/Fedora: dnf install gcc make python3), then run `npm rebuild baton`';

function unavailable(message: string, cause?: unknown): BatonError {
  return new BatonError('ERR_BATON_NATIVE_UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

let cached: NativeBinding | undefined;

/**
 * Load the addon (once; later calls return the same object). The file is found by node-gyp-build
 * in the package root: `build/Release/baton_native.node` when it was built from source, else the
 * prebuild for this platform in `prebuilds/<platform>-<arch>/` (`PREBUILDS_ONLY=1` skips `build/`).
 *
 * @throws BatonError `ERR_BATON_NATIVE_UNAVAILABLE` with one line naming the platform and what to
 *   do: on a platform other than Linux, when there is neither a prebuild for this platform nor a
 *   build from source, or when the file cannot be loaded (e.g. a glibc older than the prebuild's).
 */
export function loadBinding(): NativeBinding {
  if (cached !== undefined) return cached;
  if (process.platform !== 'linux') {
    throw unavailable(`baton's native fd channel supports Linux only (this is ${process.platform})`);
  }
  const root = findPackageRoot();
  if (root === undefined) {
    throw unavailable('baton native addon: cannot find the package root (package.json + binding.gyp)');
  }
  const require = createRequire(import.meta.url);
  const resolver = require('node-gyp-build') as AddonResolver; // a dependency: missing means a broken install
  let file: string;
  try {
    file = resolver.path(root);
  } catch (error) {
    throw unavailable(
      `baton's native addon is not available for ${platformLabel()}, Node ${process.version}: ` +
        `no prebuilt binary ships for this platform and none was built from source at install; ${TOOLCHAIN_HINT}`,
      error,
    );
  }
  try {
    cached = require(file) as NativeBinding;
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0];
    throw unavailable(
      `baton's native addon ${file} does not load on ${platformLabel()}, Node ${process.version} (${reason}); ${TOOLCHAIN_HINT}`,
      error,
    );
  }
  return cached;
}

/** True when {@link loadBinding} would succeed. Never throws. */
export function isNativeAvailable(): boolean {
  try {
    loadBinding();
    return true;
  } catch {
    return false;
  }
}
