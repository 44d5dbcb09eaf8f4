// An unmodified Koa app (no baton code).
import Koa from 'koa';

const app = new Koa();
app.use((ctx) => {
  ctx.set('x-pid', String(process.pid));
  ctx.body = `koa pid ${process.pid}\n`;
});
const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: server.address().port }));
});
