// An unmodified Express 5 app (no baton code): started by `baton run` in tests.
const express = require('express');

const app = express();
app.get('/', (req, res) => {
  res.set('x-pid', String(process.pid));
  res.send(`express5 ${process.env.APP_VERSION ?? 'v1'} pid ${process.pid}\n`);
});
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
    console.log(JSON.stringify({ event: 'app-listening', pid: process.pid, port: server.address().port }));
  });
}
