/**
 * Node's own count of an HTTP/2 session's open streams (src/native/internals.ts),
 * read where a session may migrate: it must be found on a real session of this
 * Node (its maps are Node's primordial SafeMap/SafeSet, which an `instanceof Map`
 * test did not recognise — baton then fell back to a listener on every stream).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { http2OpenStreams } from '../../src/native/internals.js';

test("http2OpenStreams reads Node's stream map: 0, 1 while a stream is open, 0 after it closed", async () => {
  const server = http2.createServer();
  const seen: (number | undefined)[] = [];
  let session: http2.ServerHttp2Session | undefined;
  server.on('session', (s) => {
    session = s;
    seen.push(http2OpenStreams(s));
  });
  let streamClosed!: Promise<unknown>;
  server.on('stream', (stream) => {
    seen.push(http2OpenStreams(stream.session!));
    streamClosed = once(stream, 'close');
    stream.respond();
    stream.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    const req = client.request({ ':path': '/' });
    req.resume();
    await once(req, 'close');
    // The server's stream leaves Node's map just before its 'close'.
    await streamClosed;
    seen.push(http2OpenStreams(session!));
    assert.deepEqual(seen, [0, 1, 0]);
  } finally {
    client.close();
    server.close();
  }
});
