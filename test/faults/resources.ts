/**
 * Resource faults: the run directory's filesystem full (a small tmpfs mounted
 * on it, filled to ENOSPC) during upgrades, and fds exhausted (`prlimit` on
 * the running server, then clients holding connections — TCP clients, or idle
 * peers on the upgrade socket) until they are released. Each runs through
 * runCase, so it is judged like a failpoint case: a generation serves
 * afterwards, the next upgrade works, no stale files, no zombies, fds flat.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { runCase, type CaseResult, type CaseSpec, type ResourceFault } from './fault-case.js';
import { fdCount, treeOf } from './proc-scan.js';
import type { PathName, Target } from './targets.js';

const FILLER = '.fill';

/** Mounts a 2 MiB tmpfs (mode 0700) on the target's run dir: requires root. */
function mountTmpfs(t: Target): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', t.dir]);
}

function unmount(t: Target): void {
  execFileSync('umount', ['-l', t.dir]);
}

/** A loop writing 1-byte files `<argv[1]><n>` for ever: whatever space frees up is taken. */
const REFILL = `const fs = require('fs'); let i = 0; for (;;) { try { fs.writeFileSync(process.argv[1] + i, 'x'); i++; } catch {} }`;

/** Writes to a filler file until the filesystem says ENOSPC. */
function fill(dir: string): void {
  const fd = fs.openSync(path.join(dir, FILLER), 'a');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  // The last few blocks: small writes until not even one byte fits.
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(path.join(dir, `${FILLER}.${i}`), 'x');
    } catch {
      break;
    }
  }
}

function unfill(dir: string): void {
  for (const n of fs.readdirSync(dir)) if (n.startsWith(FILLER)) fs.rmSync(path.join(dir, n));
}

/**
 * A full disk under the run dir while the path upgrades; freed before the next
 * upgrade. `keepAlive` 0: the prober alone, so nothing migrates and the
 * predecessor is gone at once (it does not roll back a failure after Done).
 */
function diskFull(via: PathName, keepAlive?: number): CaseSpec {
  let refill: ChildProcess | undefined;
  const stopRefill = async () => {
    if (!refill || refill.exitCode !== null || refill.signalCode !== null) return;
    const exited = once(refill, 'exit');
    refill.kill('SIGKILL');
    await exited;
  };
  const resource: ResourceFault = {
    id: `disk-full ${via}${keepAlive === 0 ? ' idle' : ''}`,
    keepAlive,
    setup: mountTmpfs,
    fault: async (t) => {
      fill(t.dir);
      // Kept full: a page freed (a predecessor removing its pid file) is taken back at once, by a
      // process that does nothing else (a timer here would lose the race to the successor's write).
      refill = spawn(process.execPath, ['-e', REFILL, path.join(t.dir, `${FILLER}.refill-`)], { stdio: 'ignore' });
      await t.upgrade();
    },
    recover: async (t) => {
      await stopRefill();
      unfill(t.dir);
    },
    cleanup: (t) => {
      refill?.kill('SIGKILL');
      unmount(t);
    },
  };
  return { path: via, step: undefined, action: 'kill', resource };
}

/** The processes of the service that answer: the tree's node processes with a TCP listener fd. */
function servers(t: Target): number[] {
  return [...treeOf(t.roots).keys()];
}

/** Limits every process of the service to `headroom` fds above what it has open now. */
function limitFds(t: Target, headroom: number): void {
  for (const pid of servers(t)) {
    const n = fdCount(pid);
    if (n === undefined) continue;
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${n + headroom}:${n + headroom}`]);
  }
}

/** Opens `n` connections to `connect()` and keeps them open (errors counted, not thrown). */
async function hold(n: number, connect: () => net.Socket): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = connect();
    s.on('error', () => undefined);
    sockets.push(s);
    // Connected, refused (the backlog is full, or nobody listens any more) or slow: on to the next.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 200);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      s.once('connect', done);
      s.once('close', done);
    });
  }
  return sockets;
}

/**
 * Fds exhausted by ordinary TCP clients: the server (limited to 40 fds above
 * its idle count) is sent 200 idle connections, held 1 s, then released. It
 * must survive and serve again; the next upgrade then works.
 */
function fdsByClients(path: PathName): CaseSpec {
  const resource: ResourceFault = {
    id: `fds-exhausted tcp-clients ${path}`,
    failuresExpected: true,
    fault: async (t) => {
      limitFds(t, 40);
      const held = await hold(200, () => net.connect(t.port, '127.0.0.1'));
      await new Promise((r) => setTimeout(r, 1_000));
      for (const s of held) s.destroy();
    },
  };
  return { path, step: undefined, action: 'kill', resource };
}

/** Fds exhausted by idle peers on the upgrade socket (`<dir>/fixture.sock`): the server must survive them. */
function fdsByUpgradePeers(): CaseSpec {
  const resource: ResourceFault = {
    id: 'fds-exhausted upgrade-socket takeover',
    failuresExpected: true,
    fault: async (t) => {
      limitFds(t, 40);
      const sock = fs.readdirSync(t.dir).find((n) => n.endsWith('.sock'));
      const held = await hold(200, () => net.connect(path.join(t.dir, sock ?? 'fixture.sock')));
      await new Promise((r) => setTimeout(r, 1_000));
      for (const s of held) s.destroy();
    },
  };
  return { path: 'takeover', step: undefined, action: 'kill', resource };
}

/** The resource cases, each runnable on its own. */
export function resourceCases(): { id: string; run(): Promise<CaseResult> }[] {
  const specs = [
    diskFull('takeover'),
    diskFull('takeover', 0),
    diskFull('exec'),
    diskFull('exec', 0),
    diskFull('reload'),
    diskFull('winch'),
    fdsByClients('takeover'),
    fdsByClients('reload'),
    fdsByUpgradePeers(),
  ];
  return specs.map((spec) => ({ id: spec.resource!.id, run: () => runCase(spec) }));
}
