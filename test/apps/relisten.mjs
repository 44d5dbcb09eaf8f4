// An unmodified app (no baton code) that restarts its server in-process, as
// dev reloaders and file watchers do: GET /relisten closes the server and
// listens again with the same arguments; it says so on stdout.
import http from 'node:http';

const port = Number(process.env.PORT ?? 0);
let relistens = 0;
const server = http.createServer((req, res) => {
  res.setHeader('x-pid', String(process.pid));
  if (req.url !== '/relisten') return res.end(`relisten app pid ${process.pid}\n`);
  res.end('relistening\n', () => {
    server.close();
    server.listen(port, '127.0.0.1', () => {
      relistens++;
      console.log(JSON.stringify({ event: 'app-relistened', pid: process.pid, port: server.address().port, relistens }));
    });
  });
});
server.on('error', (err) => {
  console.log(JSON.stringify({ event: 'app-error', pid: process.pid, message: err.message }));
  process.exit(1);
});
server.listen(port, '127.0.0.1');
