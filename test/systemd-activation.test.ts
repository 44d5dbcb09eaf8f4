/**
 * Socket activation: a server started by systemd-socket-activate (systemd's own
 * tool, which passes LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES exactly as a
 * socket unit does) serves on the listening socket it was given — named
 * (--fdname) or unnamed (matched by address) — instead of binding its own, and
 * a later upgrade (takeover or exec) hands that socket on to a successor while
 * an HTTP client keeps being answered.
 *
 * Like a socket unit with Accept=no, systemd-socket-activate binds, waits for
 * the first connection, then execs the program in its own process (same pid)
 * with the listener as fd 3. The test's first request is that connection: it
 * waits in the listen backlog and must be answered by the activated server.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { HttpLoad, getOnce } from './helpers/http-load.js';
import { activate as activateCommand, activateSkip, freePort } from './helpers/socket-activate.js';
import { EventLog, fixture, killAll, pidsOf, spawnFixture, tempDir } from './helpers/server-process.js';

const skip = activateSkip;

const get = (port: number) => getOnce(`http://127.0.0.1:${port}`);

describe('socket activation by systemd-socket-activate', { skip }, () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  for (const named of [true, false]) {
    it(`serves on the ${named ? 'named (--fdname=http)' : 'unnamed (matched by address)'} listener it was given`, async () => {
      const port = await freePort();
      // Unnamed fds are matched by address, so the app asks for this very port.
      const env: Record<string, string> = { BATON_SOCKET_DIR: tempDir(), ...(named ? {} : { PORT: String(port) }) };
      const child = await activateCommand(log, port, env, named ? 'http' : undefined, [process.execPath, fixture('server')]);
      // This connection starts the server; it waits in the backlog meanwhile.
      const first = get(port);
      const started = await log.waitEvent('started', child.pid);
      assert.equal(started.origin, 'systemd');
      assert.equal(started.generation, 1);
      const listening = await log.waitEvent('listening', child.pid);
      assert.equal(listening.http, port, 'the port systemd-socket-activate bound');
      assert.deepEqual(listening.origins, ['inherited', 'bound'], "'http' inherited, 'h2c' bound by the app");
      await log.waitEvent('ready', child.pid);

      const res = await first;
      assert.equal(res.status, 200);
      assert.equal(res.pid, child.pid, 'answered by the activated process (exec keeps the pid)');
      const again = await get(port);
      assert.equal(again.pid, child.pid);

      child.kill('SIGTERM');
      await log.waitEvent('exit', child.pid);
    });
  }

  for (const path of ['takeover', 'exec'] as const) {
    it(`hands the systemd listener to a successor by ${path} while a client is answered`, async () => {
      const port = await freePort();
      const env = { BATON_SOCKET_DIR: tempDir() };
      const child = await activateCommand(log, port, env, 'http', [process.execPath, fixture('server')]);
      const first = get(port);
      await log.waitEvent('ready', child.pid);
      assert.equal((await first).pid, child.pid);

      const load = new HttpLoad(`http://127.0.0.1:${port}`, 4);
      await load.waitForGeneration((g) => g === 1);
      const since = log.events.length;
      if (path === 'takeover') spawnFixture(fixture('server'), env, log);
      else child.kill('SIGUSR2');
      const started = await log.waitFor((e) => e.event === 'started' && e.generation === 2, 'generation 2 started', 60_000, since);
      const successor = started.pid;
      assert.equal(started.origin, path);
      const listening = await log.waitEvent('listening', successor);
      assert.equal(listening.http, port, `same port after the ${path} upgrade`);
      assert.deepEqual(listening.origins, ['inherited', 'inherited']);
      await log.waitEvent('ready', successor);
      await log.waitFor((e) => e.event === 'upgrade' && e.pid === child.pid, 'the systemd generation handing over', 60_000, since);
      await load.waitForGeneration((g) => g === 2);
      const result = await load.stop();

      assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
      assert.ok((result.generations.get(1) ?? 0) > 0 && (result.generations.get(2) ?? 0) > 0, 'both generations answered');
      assert.deepEqual([...result.pids].sort(), [child.pid, successor].sort());
      await log.waitEvent('exit', child.pid);
      await log.waitEvent('predecessor-done', successor);
      assert.equal((await get(port)).pid, successor, 'the successor serves alone');

      process.kill(successor, 'SIGTERM');
      await log.waitEvent('exit', successor);
    });
  }
});
