// An unmodified Fastify 5 app (no baton code), version 2: GET /version answers v2, and a new route /new
import Fastify from 'fastify';

const app = Fastify();
app.addHook('onSend', async (_req, reply) => {
  reply.header('x-pid', String(process.pid));
});
app.get('/', async () => 'fastify pid ' + process.pid + '\n');
app.get('/version', async () => 'v2');
app.get('/new', async () => 'new in v2');
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: app.server.address().port }));
