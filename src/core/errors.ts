/**
 * Every failure baton reports is a {@link BatonError} with a stable `code`.
 * Codes never change meaning once released; docs/errors.md lists them all and a
 * test fails when one is missing there.
 *
 * Syscall failures are not wrapped: they keep Node's own shape (`code`, `errno`,
 * `syscall`, `path`) — see src/native/system-error.ts.
 */

/** The stable error codes, each with its meaning. */
export const ErrorCodes = {
  /** The peer speaks a protocol version this build does not support. */
  ERR_BATON_PROTOCOL_VERSION: 'incompatible handover protocol version',
  /** A frame on the upgrade channel could not be decoded (bad magic, type, JSON, fd count). */
  ERR_BATON_BAD_FRAME: 'malformed handover frame',
  /** A frame announced a payload larger than the configured maximum. */
  ERR_BATON_FRAME_TOO_LARGE: 'handover frame too large',
  /** A frame arrived that the protocol does not allow at this point. */
  ERR_BATON_UNEXPECTED_FRAME: 'unexpected handover frame',
  /** The peer's uid is not allowed to take over this server. */
  ERR_BATON_PEER_REFUSED: 'upgrade peer refused',
  /** Another successor is already taking over this server. */
  ERR_BATON_UPGRADE_IN_PROGRESS: 'an upgrade is already in progress',
  /** An upgrade would make more generations of the server alive at once than `maxGenerations` allows (older ones still drain). */
  ERR_BATON_TOO_MANY_GENERATIONS: 'too many generations alive',
  /** The peer did not send its hello in time. */
  ERR_BATON_HELLO_TIMEOUT: 'handover hello timed out',
  /** The other side of a handover did not send the frame a later step waits for in time (the message names the frame and the timeout). */
  ERR_BATON_PEER_TIMEOUT: 'handover peer did not answer in time',
  /** The successor did not become ready within the ready timeout. */
  ERR_BATON_READY_TIMEOUT: 'successor not ready in time',
  /** Data consistency mode: requests were still in flight when the quiesce timed out. */
  ERR_BATON_QUIESCE_TIMEOUT: 'requests still in flight at the quiesce timeout',
  /** A successor runs another app than the server it would replace, and was not named so on purpose. */
  ERR_BATON_APP_MISMATCH: 'successor runs another app',
  /** The successor exited or closed the channel before it was ready. */
  ERR_BATON_SUCCESSOR_EXITED: 'successor exited before ready',
  /** The successor went away after it was ready, while connections were migrating to it. */
  ERR_BATON_SUCCESSOR_LOST: 'successor lost during connection migration',
  /** The predecessor went away during the handover. */
  ERR_BATON_PREDECESSOR_LOST: 'predecessor went away during handover',
  /** The predecessor aborted this handover; the message says why. */
  ERR_BATON_ABORTED: 'handover aborted by the predecessor',
  /** The app state is not JSON-serialisable or exceeds the size limit. */
  ERR_BATON_STATE_INVALID: 'app state cannot be handed over',
  /** An inherited fd is not the socket it claims to be. */
  ERR_BATON_INHERITED_FD_INVALID: 'inherited fd failed validation',
  /** A listener name was used twice, or the server is already listening. */
  ERR_BATON_LISTENER_CONFLICT: 'listener conflict',
  /** The upgrade socket directory is owned by another user or has a wider mode than 0700. */
  ERR_BATON_SOCKET_DIR_INSECURE: 'upgrade socket directory is not private',
  /** An API was called in a phase where it is not allowed. */
  ERR_BATON_INVALID_PHASE: 'operation not allowed in this phase',
  /** The successor process could not be spawned. */
  ERR_BATON_SPAWN_FAILED: 'successor could not be started',
  /** The native addon is not built or the platform is not supported. */
  ERR_BATON_NATIVE_UNAVAILABLE: 'native addon unavailable',
  /** Fds were lost in transit (MSG_CTRUNC), typically because RLIMIT_NOFILE was reached. */
  ERR_BATON_FDS_TRUNCATED: 'fds truncated in transit',
  /** The channel was closed while an operation was pending. */
  ERR_BATON_CHANNEL_CLOSED: 'channel closed',
  /** A Node-API call inside the native addon failed: a bug in baton, please report it. */
  ERR_BATON_NAPI: 'internal native addon failure',
  /** The successor did not acknowledge a batch of migrated connections in time. */
  ERR_BATON_MIGRATION_TIMEOUT: 'connection migration not acknowledged in time',
  /** A migrated connection could not be resumed in the successor (its bytes were not what the predecessor announced). */
  ERR_BATON_MIGRATION_LOST: 'migrated connection lost',
  /** Late state (socket.io's recovery store) could not be handed to the successor (too large for a frame, or its provider failed); serving goes on. */
  ERR_BATON_LATE_STATE: 'late state not handed over',
  /** A private internal of Node or ws that baton relies on is missing (another release): the message names it and what degrades; serving goes on. */
  ERR_BATON_INTERNAL_MISSING: 'Node or ws internal missing',
  /** A best-effort file (pid file, upgrade socket) could not be written: the message names the file and the errno; serving goes on. */
  ERR_BATON_FILE_WRITE_FAILED: 'best-effort file not written',
  /** The upgrade socket could not accept a connection (out of fds or memory): it retries; serving goes on. */
  ERR_BATON_ACCEPT_FAILED: 'upgrade socket accept failed',
  /** A configuration value is invalid. */
  ERR_BATON_INVALID_OPTION: 'invalid option',
  /** The supervisor's config file is unreadable or invalid (the message names file, key path and line). */
  ERR_BATON_CONFIG_INVALID: 'invalid config',
  /** `baton start` found a master already running the same name (its pid file and control socket answer). */
  ERR_BATON_MASTER_RUNNING: 'a master already runs',
  /** No running master answers for this config or pid file (CLI). */
  ERR_BATON_NO_MASTER: 'no running master',
  /** A worker did not become ready in time, or exited before it was ready. */
  ERR_BATON_WORKER_FAILED: 'worker failed to start',
  /** One worker slot keeps crashing; restarts go on at the longest backoff. */
  ERR_BATON_CRASH_LOOP: 'worker crash loop',
  /** A reload (HUP) did not bring up every new worker; the old ones serve on where it failed. */
  ERR_BATON_RELOAD_FAILED: 'reload failed',
  /** A binary upgrade failed: the new master exited or failed its health check, and the old one took over again. */
  ERR_BATON_UPGRADE_FAILED: 'upgrade failed',
  /** A control-socket request was malformed, refused or timed out. */
  ERR_BATON_CONTROL: 'control request failed',
} as const;

/** The brand of a {@link BatonError}, the same symbol in every copy of baton. */
const BRAND = Symbol.for('baton.BatonError');

/** One of the stable codes in {@link ErrorCodes}. */
export type ErrorCode = keyof typeof ErrorCodes;

/**
 * The error class of everything baton reports. `code` is stable; `message`
 * names what failed and where (listener name, socket path, pid, timeout).
 */
export class BatonError extends Error {
  override readonly name = 'BatonError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /**
   * `err instanceof BatonError` holds for a BatonError of any copy of baton
   * in the process (the app's dependency and `baton run`'s preload are two
   * module instances with two classes): it checks the brand every copy sets,
   * not the prototype chain.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** True when `err` is a {@link BatonError}, optionally with the given code. */
export function isBatonError(err: unknown, code?: ErrorCode): err is BatonError {
  return err instanceof BatonError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into an Error, keeping Errors as they are. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * The warning for a best-effort file that could not be written: names the
 * file and the errno (`err`'s message, e.g. `ENOSPC: no space left on
 * device, write`), then what it means for the generation.
 */
export function fileWriteFailed(file: string, consequence: string, err: unknown): BatonError {
  return new BatonError('ERR_BATON_FILE_WRITE_FAILED', `could not write ${file}: ${asError(err).message}; ${consequence}`, {
    cause: err,
  });
}
