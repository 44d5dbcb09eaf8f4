// An unmodified app with its own SIGTERM handler (no baton code): its
// shutdown code closes the server, says so, and exits.
import http from 'node:http';

const server = http.createServer((_req, res) => {
  res.setHeader('x-pid', String(process.pid));
  res.end(`own-sigterm pid ${process.pid}\n`);
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => {
    console.log(JSON.stringify({ event: 'app-shutdown', pid: process.pid }));
    process.exit(0);
  });
});
