import type net from 'node:net';

/**
 * Low-level control of a connected socket's reading, for connections about to
 * leave the process. Node has no public API for these; each uses the
 * semi-internal `_handle` (libuv stream) that Node's own net module drives.
 */

type StreamHandle = { readStop?: () => number; readStart?: () => number; reading?: boolean };

/**
 * Stops libuv reading from `socket`: later bytes stay in the kernel and travel
 * with the fd. (`socket.pause()` alone does not stop libuv.) Returns false when
 * the socket has no handle to stop.
 */
export function stopReading(socket: net.Socket): boolean {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (!handle?.readStop) return false;
  handle.readStop();
  handle.reading = false;
  return true;
}

/** Undoes {@link stopReading} for a connection that stays in this process. */
export function resumeReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (!handle?.readStart || socket.destroyed) return;
  handle.reading = true;
  handle.readStart();
}

/** The fd of a connected socket (Node keeps it on the semi-internal `_handle`). */
export function socketFd(socket: net.Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: number } | null })._handle;
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
}

/**
 * Takes the bytes the socket read but the app has not consumed (the stream's
 * buffer), so that they travel with the connection and the app here never
 * sees them. Call after {@link stopReading}. Put them back with
 * `socket.unshift()` if the connection stays after all.
 */
export function takeBuffered(socket: net.Socket): Buffer | undefined {
  if (socket.readableLength === 0) return undefined;
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  // read() below would restart libuv reading when it sees `reading` false.
  const wasReading = handle?.reading;
  if (handle) handle.reading = true;
  try {
    const data: unknown = socket.read();
    if (data === null || data === undefined) return undefined;
    return Buffer.isBuffer(data) ? data : Buffer.from(String(data));
  } finally {
    if (handle) handle.reading = wasReading;
  }
}
