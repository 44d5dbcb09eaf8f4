import type net from 'node:net';
import { hasPendingResponse, http1ConnectionsList } from '../native/internals.js';

/**
 * The HTTP/1.1 connections of `server` that sit between two requests: the
 * response is done and the parser has not seen a byte of the next request.
 * Only those can leave the process: bytes Node's parser has consumed cannot be
 * recovered from JavaScript, so a connection with a partly received request
 * must finish here.
 *
 * Uses Node's own list of parsers (the one behind `closeIdleConnections()`):
 * a parser is idle when no message has begun since the last one completed.
 * A connection that has not received a single byte yet is at a boundary too,
 * though Node lists it as active from the start (its headersTimeout guard): a
 * client that connected ahead of its first request, or a connection adopted
 * from the predecessor that has not been used since. Without it, such a
 * connection would not move at the next upgrade and wait for the drain timeout.
 * Returns an empty set when the list is not there (another Node version: the
 * HTTP/1.1 kind then accepts no server, see kind-http1.ts).
 */
export function idleHttp1Sockets(server: net.Server): Set<net.Socket> {
  const list = http1ConnectionsList(server);
  const out = new Set<net.Socket>();
  if (!list) return out;
  for (const parser of list.idle()) {
    const socket = parser.socket;
    if (socket && !hasPendingResponse(socket)) out.add(socket);
  }
  for (const parser of list.active?.() ?? []) {
    const socket = parser.socket;
    if (socket && socket.bytesRead === 0 && !hasPendingResponse(socket)) out.add(socket);
  }
  return out;
}

/**
 * The HTTP/1.1 connections of `server` with a request being received or
 * answered (the complement of {@link idleHttp1Sockets} in Node's parser list).
 */
export function busyHttp1Sockets(server: net.Server): Set<net.Socket> {
  const list = http1ConnectionsList(server);
  const out = new Set<net.Socket>();
  for (const parser of list?.active?.() ?? []) {
    const socket = parser.socket;
    if (socket && !(socket.bytesRead === 0 && !hasPendingResponse(socket))) out.add(socket);
  }
  return out;
}
