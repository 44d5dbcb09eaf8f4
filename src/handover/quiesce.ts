/**
 * Data consistency mode, the predecessor's part (`start({ consistency: true })`,
 * `baton run --consistent`): before the successor gets the app state — and so
 * before its app code loads its data — this generation stops taking new
 * requests and finishes the ones in flight, so nothing the successor reads
 * changes behind its back.
 *
 * Quiescing: the listeners stop accepting (each listening socket is kept open
 * by a duplicate fd: connections wait in the kernel's accept queue, none is
 * refused); idle HTTP/1.1 keep-alive connections stop being read (a request a
 * client sends waits in the kernel and travels with the connection); a
 * connection whose request is in flight stops being read once its response
 * has finished (flushed to the kernel). Quiet when no request is in flight.
 * Then the successor becomes ready and the drain runs as usual: its first
 * look finds every connection idle, and they migrate.
 *
 * If the successor fails before it is ready, {@link Quiesced.resume} makes
 * this generation accept and read again: nothing was lost, requests were
 * only delayed. Covers plain HTTP/1.1 (the requests Node's http parser sees,
 * on connections that migrate); other connections (TLS, WebSockets, h2c
 * sessions, raw sockets) keep being served until the drain.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { BatonError } from '../core/errors.js';
import type { ListenerSet } from '../listeners/listener-set.js';
import { busyHttp1Sockets, idleHttp1Sockets } from '../migrate/http1-idle.js';
import { resumeReading, stopReading } from '../migrate/socket-control.js';
import { acceptingServer, pendingResponse } from '../native/internals.js';

/** How often the in-flight requests are looked at while quiescing. */
const LOOK_MS = 2;

/**
 * A quiesced generation. Owns the duplicated listening fds until
 * {@link Quiesced.resume} (they accept again) or {@link Quiesced.takeReserve}
 * (the drain takes them, for its rollback).
 */
export class Quiesced {
  readonly #listeners: ListenerSet;
  #reserve: { server: net.Server; fd: number }[];
  readonly #paused = new Set<net.Socket>();
  /** When quiescing began (performance.now()). */
  readonly startedAt: number;

  private constructor(listeners: ListenerSet) {
    this.#listeners = listeners;
    this.startedAt = performance.now();
    this.#reserve = listeners.reserve();
    listeners.stopAccepting();
  }

  /**
   * Stops taking requests on `listeners` and resolves once no request is in
   * flight; rejects with ERR_BATON_QUIESCE_TIMEOUT after `timeoutMs` (having
   * resumed everything).
   */
  static async begin(listeners: ListenerSet, timeoutMs: number): Promise<Quiesced> {
    const q = new Quiesced(listeners);
    // TLS connections cannot migrate (they drain here): their reading is never stopped.
    const servers = listeners.all.map((l) => l.server).filter((server) => !(server instanceof tls.Server));
    const finishing = new WeakSet<object>();
    await new Promise<void>((resolve, reject) => {
      const look = () => {
        let busy = 0;
        for (const server of servers) {
          for (const socket of idleHttp1Sockets(server)) q.#pause(socket);
          for (const socket of busyHttp1Sockets(server)) {
            busy++;
            // Stop reading right after the response, before the client's next request is read.
            const res = pendingResponse(socket);
            if (res && !finishing.has(res)) {
              finishing.add(res);
              res.once('finish', () => q.#pause(socket));
            }
          }
        }
        if (busy === 0) {
          clearTimeout(timer);
          return resolve();
        }
        poll = setTimeout(look, LOOK_MS);
      };
      let poll: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        clearTimeout(poll);
        void q
          .resume()
          .finally(() =>
            reject(new BatonError('ERR_BATON_QUIESCE_TIMEOUT', `requests still in flight ${timeoutMs} ms after accepting stopped`)),
          );
      }, timeoutMs);
      look();
    });
    return q;
  }

  #pause(socket: net.Socket): void {
    if (socket.destroyed || this.#paused.has(socket)) return;
    stopReading(socket);
    // A held connection is not idle: the server's keep-alive timeout must not close it
    // while the successor starts (a request may wait in the kernel for it).
    socket.setTimeout(0);
    this.#paused.add(socket);
  }

  /** Paused connections read again, with the keep-alive timeout of their server. */
  #unpause(): void {
    for (const socket of this.#paused) {
      resumeReading(socket);
      const server = acceptingServer(socket) as { keepAliveTimeout?: number } | undefined;
      if (!socket.destroyed && server?.keepAliveTimeout) socket.setTimeout(server.keepAliveTimeout);
    }
    this.#paused.clear();
  }

  /** The successor failed: accept and read again, as before the quiesce. */
  async resume(): Promise<void> {
    this.#unpause();
    const reserve = this.#reserve;
    this.#reserve = [];
    await this.#listeners.resumeAccepting(reserve);
  }

  /**
   * The successor is ready: the drain takes over the reserved listening fds
   * (kept for its rollback) and the paused connections (it migrates them, or
   * they read again and drain here — see {@link Quiesced.release}).
   */
  takeReserve(): { server: net.Server; fd: number }[] {
    const reserve = this.#reserve;
    this.#reserve = [];
    return reserve;
  }

  /** Paused connections read again (a drain that does not migrate them: they answer with `Connection: close`). */
  release(): void {
    this.#unpause();
  }
}
