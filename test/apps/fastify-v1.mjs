// An unmodified Fastify 5 app (no baton code), version 1: GET /version answers v1
import Fastify from 'fastify';

const app = Fastify();
app.addHook('onSend', async (_req, reply) => {
  reply.header('x-pid', String(process.pid));
});
app.get('/', async () => 'fastify pid ' + process.pid + '\n');
app.get('/version', async () => 'v1');

await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: app.server.address().port }));
