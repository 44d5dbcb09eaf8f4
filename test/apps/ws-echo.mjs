// An unmodified http + ws echo app (no baton code): every message is echoed back.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const server = http.createServer((_req, res) => {
  res.setHeader('x-pid', String(process.pid));
  res.end(`ws-echo pid ${process.pid}\n`);
});
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => {
  ws.on('message', (data) => ws.send(data.toString()));
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: server.address().port }));
});
