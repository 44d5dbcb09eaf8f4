// An unmodified HTTP/2-over-TLS app (no baton code), with the test certificate.
import fs from 'node:fs';
import http2 from 'node:http2';

const tls = new URL('./tls/', import.meta.url);
const server = http2.createSecureServer(
  { key: fs.readFileSync(new URL('key.pem', tls)), cert: fs.readFileSync(new URL('cert.pem', tls)) },
  (_req, res) => {
    res.end(`h2 pid ${process.pid}\n`);
  },
);
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
