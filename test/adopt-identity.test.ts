/**
 * Identity of zero-code apps: the default name is the entry file's name and a
 * hash of its absolute path, so two different apps whose entry files share a
 * name (`server.mjs` in two directories) run side by side under `baton run`
 * with one socket directory and are each upgraded independently — neither
 * takes the other over. A successor running another app than the server
 * whose name it has is refused unless it was named so on purpose.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { defaultAppName } from '../src/adopt/app-name.js';
import { isBatonError } from '../src/core/errors.js';
import { checkHello } from '../src/handover/greeting.js';
import { PROTOCOL_VERSION } from '../src/protocol/frames.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';
import { cli } from './helpers/supervisor.js';

const log = new EventLog();
after(() => killAll(log.events.map((e) => e.pid)));

/** `dir/<which>/server.mjs`: an unmodified app answering with its own name. */
function writeServer(dir: string, which: string): string {
  const entry = path.join(dir, which, 'server.mjs');
  fs.mkdirSync(path.dirname(entry));
  fs.writeFileSync(
    entry,
    `import http from 'node:http';
http.createServer((_req, res) => { res.setHeader('x-pid', String(process.pid)); res.end('${which}'); }).listen(0, '127.0.0.1');
`,
  );
  return entry;
}

/** `baton run` without --name; resolves with the new app process's 'ready' event. */
async function run(socketDir: string, entry: string) {
  const since = log.events.length;
  const child = spawn(process.execPath, [cli, 'run', '--socket-dir', socketDir, '--quiet-ms', '50', entry], {
    env: { ...process.env, BATON_LOG: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  log.attach(child.stdout!);
  log.attach(child.stderr!);
  return log.waitFor((e) => e.event === 'ready' && e.pid !== undefined, `${entry} ready`, 30_000, since);
}

const portOf = (pid: number) => log.events.find((e) => e.event === 'listening' && e.pid === pid)!.port as number;

async function answer(pid: number): Promise<{ body: string; pid: number }> {
  const res = await fetch(`http://127.0.0.1:${portOf(pid)}/`, { headers: { connection: 'close' } });
  return { body: await res.text(), pid: Number(res.headers.get('x-pid')) };
}

describe('zero-code identity', () => {
  test('two apps named server.mjs in different directories run side by side and are upgraded independently', async () => {
    const dir = tempDir('baton-identity-');
    const a = writeServer(dir, 'a');
    const b = writeServer(dir, 'b');
    assert.notEqual(defaultAppName(a), defaultAppName(b));
    assert.match(defaultAppName(a), /^server-[0-9a-f]{8}$/);
    let pa = (await run(dir, a)).pid;
    let pb = (await run(dir, b)).pid;
    for (const [pid, origin] of [
      [pa, 'fresh'],
      [pb, 'fresh'],
    ] as const) {
      const ready = log.events.find((e) => e.event === 'ready' && e.pid === pid)!;
      assert.equal(ready.origin, origin, 'the second app did not take the first over');
      assert.equal(ready.generation, 1);
    }
    assert.deepEqual(
      fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.sock'))
        .sort(),
      [`${defaultAppName(a)}.sock`, `${defaultAppName(b)}.sock`].sort(),
    );
    assert.deepEqual(await answer(pa), { body: 'a', pid: pa });
    assert.deepEqual(await answer(pb), { body: 'b', pid: pb });

    for (let i = 0; i < 2; i++) {
      // Upgrade a: b is untouched.
      const sinceA = log.events.length;
      const na = await run(dir, a);
      assert.equal(na.origin, 'takeover');
      assert.equal(na.generation, i + 2);
      await log.waitFor((e) => e.event === 'drained' && e.pid === pa, `a (pid ${pa}) drained`, 30_000, sinceA);
      assert.equal(portOf(na.pid), portOf(pa), 'a kept its port');
      pa = na.pid;
      assert.deepEqual(await answer(pa), { body: 'a', pid: pa });
      assert.deepEqual(await answer(pb), { body: 'b', pid: pb }, 'b still served by the same process');
      assert.ok(!log.events.slice(sinceA).some((e) => e.pid === pb && (e.event === 'upgrade' || e.event === 'drained')));
      // Upgrade b: a is untouched.
      const sinceB = log.events.length;
      const nb = await run(dir, b);
      assert.equal(nb.origin, 'takeover');
      assert.equal(nb.generation, i + 2);
      await log.waitFor((e) => e.event === 'drained' && e.pid === pb, `b (pid ${pb}) drained`, 30_000, sinceB);
      pb = nb.pid;
      assert.deepEqual(await answer(pb), { body: 'b', pid: pb });
      assert.deepEqual(await answer(pa), { body: 'a', pid: pa }, 'a still served by the same process');
      assert.ok(!log.events.slice(sinceB).some((e) => e.pid === pa && (e.event === 'upgrade' || e.event === 'drained')));
    }
    process.kill(pa, 'SIGTERM');
    process.kill(pb, 'SIGTERM');
  });

  test('a successor running another app is refused unless it was named so on purpose', () => {
    const hello = { protocol: PROTOCOL_VERSION, pid: 42, generation: 0, name: 'server', node: process.version, app: '/srv/b/server.mjs' };
    assert.throws(
      () => checkHello(hello, 'server', 42, '/srv/a/server.mjs'),
      (err: unknown) =>
        isBatonError(err, 'ERR_BATON_APP_MISMATCH') &&
        /runs \/srv\/b\/server\.mjs, but server 'server' runs \/srv\/a\/server\.mjs; give both the same --name/.test(
          (err as Error).message,
        ),
    );
    assert.equal(checkHello({ ...hello, namedOnPurpose: true }, 'server', 42, '/srv/a/server.mjs').pid, 42);
    assert.equal(checkHello(hello, 'server', 42, '/srv/b/server.mjs').pid, 42, 'the same app');
    assert.equal(checkHello(hello, 'server', 42, undefined).pid, 42, 'a library server names no app');
  });
});
