// An unmodified socket.io 4 app (no baton code), default server settings
// (SIO_TRANSPORTS=websocket restricts the transports). 'msg' is acknowledged
// with the number received and this process's pid, and logged as a JSON line so
// a test can count what each process processed; 'shout' broadcasts to every client.
import http from 'node:http';
import { Server } from 'socket.io';

const server = http.createServer();
const io = new Server(server, process.env.SIO_TRANSPORTS ? { transports: process.env.SIO_TRANSPORTS.split(',') } : {});
io.on('connection', (socket) => {
  socket.on('msg', (client, n, ack) => {
    process.stdout.write(`${JSON.stringify({ event: 'msg', pid: process.pid, client, n })}\n`);
    ack({ n, pid: process.pid });
  });
  socket.on('shout', (tag, ack) => {
    io.emit('broadcast', tag);
    ack(io.engine.clientsCount);
  });
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
