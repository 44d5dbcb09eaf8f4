/**
 * Readable logs without a flag: `baton start` on a real terminal (a pty from
 * util-linux's `script`) writes human text lines — pino-pretty's, none of
 * them JSON — and on a pipe JSON lines; with a log file, an unmodified app's
 * own output is kept apart from baton's records there: each of its lines is a
 * record of its own (`event: 'worker-output'`, the slot, the worker's pid and
 * the stream), never mixed into one of baton's.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { after, describe, it } from 'node:test';
import { request } from 'undici';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { cli, writeAppConfig } from './helpers/supervisor.js';

const noScript = spawnSync('script', ['--version']).status !== 0 ? 'util-linux script is not installed' : false;

/** An unmodified app that says a line on each stream at start-up and answers every request. */
function writeChattyApp(dir: string): string {
  const app = path.join(dir, 'chatty.mjs');
  fs.writeFileSync(
    app,
    [
      "import http from 'node:http';",
      "console.log('chatty says hello on stdout');",
      "console.error('chatty says hello on stderr');",
      "http.createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');",
    ].join('\n'),
  );
  return app;
}

interface LogRecord {
  event?: string;
  msg?: string;
  slot?: number;
  workerPid?: number;
  stream?: string;
}

function readRecords(file: string): LogRecord[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.endsWith('}'))
    .map((l) => JSON.parse(l) as LogRecord);
}

/** Resolves once `file` holds a record matching `match` (watched, not polled); rejects after 30 s. */
function recordIn(file: string, match: (r: LogRecord) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const dir = fs.watch(path.dirname(file), () => check());
    const timer = setTimeout(() => {
      dir.close();
      reject(new Error(`no such record in ${file}:\n${fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '(no file)'}`));
    }, 30_000);
    const check = () => {
      if (!readRecords(file).some(match)) return;
      clearTimeout(timer);
      dir.close();
      resolve();
    };
    check();
  });
}

describe('log output', () => {
  const log = new EventLog();
  after(() => killAll(log.events.map((e) => e.pid)));

  it('on a terminal: human text lines, not JSON', { skip: noScript }, async (t) => {
    const dir = tempDir('baton-log-');
    const { cfg } = await writeAppConfig(dir, writeChattyApp(dir), { workers: 1 });
    // script runs the command on a new pty and copies what it writes to its own stdout.
    const command = [process.execPath, cli, 'start', '-c', cfg].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    t.after(() => {
      const pid = Number(/INFO \((?:[^/)]*\/)?(\d+)\)/.exec(lines.find((l) => /INFO/.test(l)) ?? '')?.[1]);
      if (pid > 0) killAll([pid]);
      child.kill('SIGKILL');
    });
    const lines: string[] = [];
    // The master's running line: a worker's line can follow it before the await below resumes.
    const running = new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on('line', (l) => {
        lines.push(l.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r$/, ''));
        if (/master phase starting -> running/.test(lines.at(-1)!)) resolve(lines.at(-1)!);
      });
      child.once('exit', (code) => reject(new Error(`script exited with ${code}: ${lines.join('\n')}`)));
    });
    const runningLine = await running;
    // pino-pretty's line: `[time] INFO (name/pid): message`.
    const pid = Number(/INFO \((?:[^/)]*\/)?(\d+)\)/.exec(runningLine)?.[1]);
    assert.ok(pid > 0, `no pid in ${runningLine}`);
    process.kill(pid, 'SIGQUIT');
    await new Promise((r) => child.once('exit', r));

    const own = lines.filter((l) => l.trim() !== '' && !l.startsWith('chatty says'));
    assert.ok(own.length >= 3, lines.join('\n'));
    for (const l of own) assert.throws(() => JSON.parse(l), `a JSON line on a terminal: ${l}`);
    assert.ok(
      own.some((l) => /INFO.*master phase starting -> running/.test(l)),
      own.join('\n'),
    );
  });

  it('with a log file: JSON records, and the app’s lines are records of their own', async (t) => {
    const dir = tempDir('baton-log-');
    const file = path.join(dir, 'baton.log');
    const { cfg, port } = await writeAppConfig(dir, writeChattyApp(dir), { workers: 2, extra: `log: { file: ${file} }` });
    const child = spawn(process.execPath, [cli, 'start', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    const exited = new Promise((r) => child.once('exit', r));
    await recordIn(file, (r) => r.event === 'master-ready');
    assert.equal(await (await request(`http://127.0.0.1:${port}/`)).body.text(), 'ok');
    child.kill('SIGQUIT');
    await exited;

    const records = readRecords(file);
    const app = records.filter((r) => r.event === 'worker-output');
    const said = (stream: string) => app.filter((r) => r.stream === stream && /^chatty says hello on /.test(r.msg ?? ''));
    // Each of the two workers said its two lines, each line one record naming its worker.
    assert.equal(said('stdout').length, 2, JSON.stringify(app));
    assert.equal(said('stderr').length, 2, JSON.stringify(app));
    assert.deepEqual(new Set(said('stdout').map((r) => r.slot)), new Set([0, 1]));
    for (const r of [...said('stdout'), ...said('stderr')]) assert.ok(Number.isInteger(r.workerPid), JSON.stringify(r));
    // baton's own records never carry the app's words.
    for (const r of records.filter((x) => x.event !== 'worker-output')) assert.doesNotMatch(r.msg ?? '', /says hello/);
    assert.ok(records.some((r) => r.event === 'master-ready'));
  });
});
