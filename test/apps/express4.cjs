// An unmodified Express 4 app (no baton code).
const express = require('express4');

const app = express();
app.get('/', (req, res) => {
  res.set('x-pid', String(process.pid));
  res.send(`express4 pid ${process.pid}\n`);
});
const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: server.address().port }));
});
