// An unmodified HTTP/2 (h2c) app (no baton code).
import http2 from 'node:http2';

const server = http2.createServer();
server.on('stream', (stream) => {
  stream.respond({ ':status': 200, 'x-pid': String(process.pid) });
  stream.end(`h2c pid ${process.pid}\n`);
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
