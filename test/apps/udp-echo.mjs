// An unmodified UDP echo server (no baton code): each datagram is answered, 20 ms later, with
// `<pid> <datagram>`, on 127.0.0.1:UDP_PORT (default 0: any port).
import dgram from 'node:dgram';

const socket = dgram.createSocket('udp4');
socket.on('message', (msg, rinfo) => {
  setTimeout(() => socket.send(`${process.pid} ${msg}`, rinfo.port, rinfo.address), 20);
});
socket.bind(Number(process.env.UDP_PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: socket.address().port }));
});
