import type net from 'node:net';
import { handleFd, handleReadStart, handleReadStop, withReadingFlag } from '../native/internals.js';

/**
 * Low-level control of a connected socket's reading, for connections about to
 * leave the process. Node has no public API for these; each goes through the
 * socket's libuv stream handle (src/native/internals.ts).
 */

/**
 * Stops libuv reading from `socket`: later bytes stay in the kernel and travel
 * with the fd. (`socket.pause()` alone does not stop libuv.) Returns false when
 * the socket has no handle to stop.
 */
export function stopReading(socket: net.Socket): boolean {
  return handleReadStop(socket);
}

/** Undoes {@link stopReading} for a connection that stays in this process. */
export function resumeReading(socket: net.Socket): void {
  handleReadStart(socket);
}

/** The fd of a connected socket. */
export function socketFd(socket: net.Socket): number | undefined {
  return handleFd(socket);
}

/**
 * Takes the bytes the socket read but the app has not consumed (the stream's
 * buffer), so that they travel with the connection and the app here never
 * sees them. Call after {@link stopReading}. Put them back with
 * `socket.unshift()` if the connection stays after all.
 */
export function takeBuffered(socket: net.Socket): Buffer | undefined {
  if (socket.readableLength === 0) return undefined;
  // read() would restart libuv reading when it sees the handle not reading.
  return withReadingFlag(socket, () => {
    const data: unknown = socket.read();
    if (data === null || data === undefined) return undefined;
    return Buffer.isBuffer(data) ? data : Buffer.from(String(data));
  });
}
