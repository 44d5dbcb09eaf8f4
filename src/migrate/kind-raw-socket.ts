/**
 * Migration kind `socket`: raw TCP (or unix) connections of a listener the
 * app registered with `generation.migrateSockets(name, handlers)`, whatever
 * protocol they speak.
 *
 * Predecessor: reading stops (new bytes stay in the kernel); once what the
 * app wrote has flushed (bytes in the kernel's send buffer travel with the
 * socket), the bytes read but not consumed (the stream's buffer) go along as
 * the head, with the app's `state(socket)`. Successor: the head is put back
 * in front of a new `net.Socket`, which the app's `adopt(socket, state)` takes.
 */
import type net from 'node:net';
import { adoptAsSocket, refuse, type DepartureHost, type MigrationKind } from './kind.js';
import { resumeReading, stopReading, takeBuffered } from './socket-control.js';

/** The raw-socket kind (see the module comment). */
export const rawSocketKind: MigrationKind = {
  name: 'socket',
  description: 'raw connections of listeners registered with migrateSockets',
  accepts: (_server, listener, app) => app.socketHandlers(listener) !== undefined,
  depart: (host) => ({ offer: (socket, server) => offerRawSocket(host, socket, server) }),
  adopt(fd, entry, server, host) {
    const handlers = host.socketHandlers(entry.listener);
    if (!handlers) {
      return refuse(fd, `listener '${entry.listener}' has no socket handler in this generation`);
    }
    return adoptAsSocket(fd, (socket) => {
      if (entry.head) socket.unshift(Buffer.from(entry.head, 'base64'));
      host.track(socket, server);
      handlers.adopt(socket, entry.state);
    });
  },
};

/** Offers a raw connection once what the app wrote has flushed (bounded by the host's timeout). */
function offerRawSocket(host: DepartureHost, socket: net.Socket, server: net.Server): boolean {
  const name = host.nameOf(server);
  const handlers = name === undefined ? undefined : host.socketHandlers(name);
  if (name === undefined || !handlers || !stopReading(socket)) return false;
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
    if (!host.emigration.offer(socket, name, rawSocketKind.name, { head, state, restore })) {
      restore();
      giveUp();
    }
  };
  const giveUp = () => {
    socket.off('drain', go);
    resumeReading(socket);
    socket.resume();
    host.keep(socket);
  };
  const timer = setTimeout(giveUp, host.timeoutMs);
  timer.unref();
  if (socket.writableLength === 0) go();
  else socket.on('drain', go);
  return true;
}
