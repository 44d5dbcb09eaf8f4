// An unmodified socket.io 4 app (no baton code), default server settings
// (SIO_TRANSPORTS=websocket restricts the transports; SIO_RECOVERY=1 enables
// connectionStateRecovery with its defaults). 'msg' is acknowledged with the
// number received and this process's pid, and logged as a JSON line so a test
// can count what each process processed; 'shout' broadcasts to every client.
// With SIO_TICK_MS set, the process broadcasts 'tick' (pid, seq) that often
// and logs each, so a test can tell which broadcasts each client missed.
import http from 'node:http';
import { Server } from 'socket.io';

const options = {};
if (process.env.SIO_TRANSPORTS) options.transports = process.env.SIO_TRANSPORTS.split(',');
if (process.env.SIO_RECOVERY === '1') options.connectionStateRecovery = {};
const server = http.createServer();
const io = new Server(server, options);
const log = (line) => process.stdout.write(`${JSON.stringify({ ...line, pid: process.pid })}\n`);
io.on('connection', (socket) => {
  const client = socket.handshake.auth?.client;
  // A client's room, kept across a recovery: 'whoami' tells it.
  if (!socket.recovered && typeof client === 'string') socket.join(`room-${client}`);
  log({ event: 'sio-connection', client, id: socket.id, recovered: socket.recovered });
  socket.on('msg', (client, n, ack) => {
    log({ event: 'msg', client, n });
    ack({ n, pid: process.pid });
  });
  socket.on('shout', (tag, ack) => {
    io.emit('broadcast', tag);
    ack(io.engine.clientsCount);
  });
  socket.on('whoami', (ack) => ack({ id: socket.id, rooms: [...socket.rooms] }));
});
const tickMs = Number(process.env.SIO_TICK_MS ?? 0);
if (tickMs > 0) {
  let seq = 0;
  setInterval(() => {
    seq++;
    io.emit('tick', process.pid, seq);
    log({ event: 'tick', seq });
  }, tickMs);
}
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
