// An unmodified http + ws app (no baton code) in ws's README pattern for several
// paths: two noServer WebSocketServers routed from the server's 'upgrade' event,
// /a (clients tracked) and /b (clientTracking: false). Each replies "<path>:<message>".
import http from 'node:http';
import { WebSocketServer } from 'ws';

const server = http.createServer((_req, res) => res.end(`ws-noserver pid ${process.pid}\n`));
const routes = new Map();
for (const [path, clientTracking] of [
  ['/a', true],
  ['/b', false],
]) {
  const wss = new WebSocketServer({ noServer: true, clientTracking });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => ws.send(`${path}:${data.toString()}`));
  });
  routes.set(path, wss);
}
server.on('upgrade', (req, socket, head) => {
  const wss = routes.get(new URL(req.url, 'http://localhost').pathname);
  if (!wss) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
