import type net from 'node:net';
import type { Emigration, SocketMigration } from './emigration.js';
import { resumeReading, stopReading, takeBuffered } from './socket-control.js';

/**
 * A raw connection leaves once what the app wrote has flushed: reading stops
 * first (new bytes stay in the kernel), then the bytes read but not consumed
 * (the stream's buffer) go along as its head.
 */
export function offerRawSocket(
  emigration: Emigration,
  socket: net.Socket,
  name: string,
  handlers: SocketMigration,
  timeoutMs: number,
  keep: (socket: net.Socket) => void,
): boolean {
  if (!stopReading(socket)) return false;
  socket.pause();
  const go = () => {
    clearTimeout(timer);
    socket.off('drain', go);
    if (socket.destroyed) return;
    let state: unknown;
    try {
      state = handlers.state?.(socket);
    } catch {
      state = undefined;
    }
    const head = takeBuffered(socket);
    const restore = () => {
      if (head) socket.unshift(head);
      socket.resume();
    };
    if (!emigration.offer(socket, name, 'socket', { head, state, restore })) {
      restore();
      giveUp();
    }
  };
  const giveUp = () => {
    socket.off('drain', go);
    resumeReading(socket);
    socket.resume();
    keep(socket);
  };
  const timer = setTimeout(giveUp, timeoutMs);
  timer.unref();
  if (socket.writableLength === 0) go();
  else socket.on('drain', go);
  return true;
}
