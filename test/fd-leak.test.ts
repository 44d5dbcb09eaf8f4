/**
 * No fd leak across upgrades: 10 upgrades in a row, alternating takeover and
 * exec, with a few HTTP requests served by every generation. Once a generation
 * serves and its predecessor is done, the test counts its open fds from
 * outside (/proc/<pid>/fd): after 10 upgrades a generation holds as many fds as
 * the first one did, every generation in between holds that many too, and
 * every predecessor process has exited.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, describe, it } from 'node:test';
import { EventLog, fixture, killAll, pidsOf, predecessorDone, spawnFixture, tempDir } from './helpers/server-process.js';
import { getOnce } from './helpers/http-load.js';

// A slice: the soak (`npm run soak`, bench/soak.ts) follows the fds over 1000 upgrades per path of SOAK_PATHS.
const UPGRADES = 10;
const REQUESTS_PER_GENERATION = 3;

/** Open fds of `pid`, counted by the test itself. */
function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * True once `pid` has exited: gone, or a zombie. Exec-path generations are
 * orphaned when their parent (the previous generation) exits; whoever adopts
 * them reaps them, and until it does an exited process is a zombie.
 */
function hasExited(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

const get = (port: number) => getOnce(`http://127.0.0.1:${port}`);

describe('fds across upgrades', () => {
  const log = new EventLog();
  after(() => killAll(pidsOf(log)));

  it(`holds as many fds after ${UPGRADES} upgrades (takeover and exec alternating) as the first generation`, async (t) => {
    const env = { BATON_SOCKET_DIR: tempDir() };
    const first = spawnFixture(fixture('server'), env, log);
    const listening = await log.waitEvent('listening', first.pid);
    const port = listening.http as number;
    await log.waitEvent('ready', first.pid);

    const pids: number[] = [first.pid!];
    // fds[g - 1]: generation g's fds, counted while it serves with no connection
    // open: all traffic of the previous generation ended before the upgrade, and
    // this generation's own requests come after the count.
    const fds: number[] = [fdCount(first.pid!)];
    let served = 0;
    const traffic = async (generation: number, pid: number) => {
      for (let r = 0; r < REQUESTS_PER_GENERATION; r++) {
        const res = await get(port);
        assert.equal(res.status, 200);
        assert.deepEqual([res.generation, res.pid], [generation, pid], `request ${r + 1} to generation ${generation}`);
        served++;
      }
    };
    await traffic(1, first.pid!);

    for (let g = 2; g <= UPGRADES + 1; g++) {
      const previous = pids[pids.length - 1]!;
      const path = g % 2 === 0 ? 'takeover' : 'exec';
      const since = log.events.length;
      if (path === 'takeover') spawnFixture(fixture('server'), env, log);
      else process.kill(previous, 'SIGUSR2');
      const ready = await log.waitFor((e) => e.event === 'ready' && e.generation === g, `generation ${g} ready`, 30_000, since);
      assert.equal(ready.origin, path);
      // The predecessor finished draining and the channel to it is closed.
      await predecessorDone(log, ready, since, 30_000);
      await log.waitFor((e) => e.event === 'exit' && e.pid === previous, `generation ${g - 1} exit`, 30_000, since);
      pids.push(ready.pid);
      fds.push(fdCount(ready.pid));
      await traffic(g, ready.pid);
    }

    t.diagnostic(`fds per generation: ${fds.join(' ')}; ${served} requests served`);
    assert.equal(served, (UPGRADES + 1) * REQUESTS_PER_GENERATION);
    assert.equal(new Set(pids).size, UPGRADES + 1, 'every generation has its own pid');
    assert.equal(fds[UPGRADES], fds[0], `generation ${UPGRADES + 1} holds ${fds[UPGRADES]} fds, generation 1 held ${fds[0]}`);
    assert.deepEqual(
      fds,
      fds.map(() => fds[0]),
      'every generation holds the same number of fds',
    );
    for (const pid of pids.slice(0, -1)) assert.ok(hasExited(pid), `predecessor pid ${pid} is still running`);

    const last = pids[pids.length - 1]!;
    process.kill(last, 'SIGTERM');
    await log.waitEvent('exit', last);
  });
});
