// An unmodified HTTPS app (no baton code), with a self-signed test certificate.
import fs from 'node:fs';
import https from 'node:https';

const tls = new URL('./tls/', import.meta.url);
const server = https.createServer(
  { key: fs.readFileSync(new URL('key.pem', tls)), cert: fs.readFileSync(new URL('cert.pem', tls)) },
  (_req, res) => {
    res.setHeader('x-pid', String(process.pid));
    res.end(`https pid ${process.pid}\n`);
  },
);
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
