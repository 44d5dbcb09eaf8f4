// An unmodified raw net echo server (no baton code) on a unix socket path
// (SOCKET_PATH) or a TCP port (PORT).
import net from 'node:net';

const server = net.createServer((socket) => {
  socket.on('data', (data) => socket.write(data));
  socket.on('error', () => undefined);
});
const where = process.env.SOCKET_PATH ? { path: process.env.SOCKET_PATH } : { port: Number(process.env.PORT ?? 0), host: '127.0.0.1' };
server.listen(where, () => {
  console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, address: server.address() }));
});
