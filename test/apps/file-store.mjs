// An unmodified app (no baton code) whose data lives in memory and in a file,
// as small apps keep it: it loads DATA_FILE at start, and each POST appends a
// record with the next id, writes the whole file, fsyncs it, then answers with
// the id (the write is acknowledged only once it is on disk).
import fs from 'node:fs';
import http from 'node:http';

const file = process.env.DATA_FILE;
const data = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : { nextId: 1, records: [] };

function save() {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, JSON.stringify(data));
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

const server = http.createServer((req, res) => {
  res.setHeader('x-pid', String(process.pid));
  if (req.method !== 'POST') return res.end(`${data.records.length} records\n`);
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    const id = data.nextId++;
    data.records.push({ id, body });
    save();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id }));
  });
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
