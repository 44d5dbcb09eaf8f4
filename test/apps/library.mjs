// An app that drives baton's library itself (`import { start } from 'baton'`),
// as its own dependency. Run under `baton run`, the process then holds two
// copies of baton: the CLI's preload and the app's. It prints JSON events on
// stdout: listening (port), ready, drained.
import http from 'node:http';
import { start } from 'baton';

const emit = (event, fields = {}) => console.log(JSON.stringify({ event, pid: process.pid, ...fields }));
const g = await start({ name: 'library-app', socketDir: process.env.APP_SOCKET_DIR });
const server = http.createServer((_req, res) => {
  res.setHeader('x-generation', String(g.number));
  res.setHeader('x-pid', String(process.pid));
  res.end(`library app generation ${g.number} pid ${process.pid}\n`);
});
const listener = await g.listen('http', { host: '127.0.0.1', port: Number(process.env.PORT ?? 0) }, server);
emit('listening', { port: listener.port, generation: g.number });
g.on('drained', (r) => {
  emit('drained', { migrated: r.migrated, drained: r.drained, forced: r.forced });
  process.exit(0);
});
await g.ready();
emit('ready', { generation: g.number, origin: g.origin });
