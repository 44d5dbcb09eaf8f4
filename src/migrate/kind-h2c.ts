/**
 * Migration kind `http2`: sessions of plain-text HTTP/2 servers (h2c,
 * `http2.createServer`), moved between two streams. TLS servers are not h2c:
 * their sessions drain with GOAWAY.
 *
 * From the moment the tracker follows such a server ({@link MigrationKind.prepare})
 * it advertises SETTINGS_HEADER_TABLE_SIZE 0, so clients never index request
 * headers and a session has no HPACK decoding state, and each session's
 * streams are counted. The freeze, the PING fence and the successor's resumed
 * session are in http2-session.ts.
 */
import type http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import { debuglog } from 'node:util';
import { adoptHttp2Session, followHttp2Session, offerHttp2Session, type Http2Travel } from './http2-session.js';
import { adoptAsSocket, refuse, type MigrationKind } from './kind.js';

const debug = debuglog('baton:migrate');

/** A plain-text HTTP/2 server (`http2.createServer`): the only kind whose sessions can migrate. */
function isH2cServer(server: net.Server): boolean {
  return typeof (server as Partial<http2.Http2Server>).updateSettings === 'function' && !(server instanceof tls.Server);
}

/** The h2c session kind (see the module comment). */
export const h2cKind: MigrationKind = {
  name: 'http2',
  description: 'h2c (HTTP/2 over plain TCP) sessions',
  accepts: (server) => isH2cServer(server),
  prepare(server) {
    if (!isH2cServer(server)) return;
    // Clients then never index request headers, so a session has no HPACK
    // decoding state and can migrate (http2-session.ts).
    (server as http2.Http2Server).updateSettings({ headerTableSize: 0 });
    // The connection the server is setting a session up on ('session' comes inside its 'connection').
    let arriving: net.Socket | undefined;
    server.prependListener('connection', (socket: net.Socket) => (arriving = socket));
    server.on('session', (session: http2.ServerHttp2Session) => {
      if (arriving) followHttp2Session(session, arriving);
      arriving = undefined;
    });
  },
  depart: (host) => ({
    offerSession(session, server, fallback) {
      const name = host.nameOf(server);
      if (name === undefined) return false;
      return offerHttp2Session(h2cKind.name, host.emigration, session, name, host.timeoutMs, (why) => {
        debug('an HTTP/2 session stays and gets GOAWAY: %s', why);
        fallback();
      });
    },
  }),
  adopt(fd, entry, server, host) {
    // A listener whose server changed protocol in this version cannot take the connection: it stays and drains there.
    if (!isH2cServer(server)) {
      return refuse(fd, `listener '${entry.listener}' is not served by an h2c server here`);
    }
    // The session starts once the client's bytes up to the fence are read (see http2-session.ts).
    return adoptAsSocket(fd, (socket) =>
      adoptHttp2Session(socket, server, entry.state as Http2Travel, host.timeoutMs, (why) => host.onLost(entry.listener, why)),
    );
  },
};
