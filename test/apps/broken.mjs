// Broken apps (no baton code), chosen by BROKEN: never-listens, listens-twice, throws.
import http from 'node:http';

const mode = process.env.BROKEN;
if (mode === 'throws') throw new Error('the app failed at start');
const handler = (_req, res) => res.end('broken\n');
if (mode === 'listens-twice') {
  http.createServer(handler).listen(Number(process.env.PORT), '127.0.0.1');
  http.createServer(handler).listen(Number(process.env.PORT), '127.0.0.1');
}
if (mode === 'never-listens') setInterval(() => undefined, 1000);
