// An app that declares itself ready (`baton run --ready explicit`) once it has
// warmed up — here, when it receives SIGHUP.
import http from 'node:http';
import { adoptedReady } from 'baton';

const server = http.createServer((_req, res) => res.end('warm\n'));
server.listen(0, '127.0.0.1', () => console.error(JSON.stringify({ event: 'app-warming-up', pid: process.pid })));
process.once('SIGHUP', () => {
  console.error(JSON.stringify({ event: 'app-declares-ready', pid: process.pid }));
  void adoptedReady();
});
