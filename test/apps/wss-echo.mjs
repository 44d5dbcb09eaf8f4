// An unmodified https + ws echo app (no baton code), with the test certificate: every message is echoed back with the pid.
import fs from 'node:fs';
import https from 'node:https';
import { WebSocketServer } from 'ws';

const tls = new URL('./tls/', import.meta.url);
const server = https.createServer(
  { key: fs.readFileSync(new URL('key.pem', tls)), cert: fs.readFileSync(new URL('cert.pem', tls)) },
  (_req, res) => {
    res.setHeader('x-pid', String(process.pid));
    res.end(`wss-echo pid ${process.pid}\n`);
  },
);
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => {
  ws.on('message', (data) => ws.send(`${process.pid} ${data}`));
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
