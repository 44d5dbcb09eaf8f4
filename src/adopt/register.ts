/**
 * Preload entry of zero-code adoption: `node --import baton/register app.js`
 * (what `baton run` and `baton start`'s workers run). Settings come from the
 * environment:
 * - BATON_NAME: the generation's name (default: the app file's name and a
 *   short hash of its absolute path, `server-1a2b3c4d`: two apps with the same
 *   file name in different directories are different servers);
 * - BATON_CONSISTENCY: `1` for data consistency mode — the app's main module
 *   is evaluated only once the predecessor has quiesced (see startBeforeApp);
 * - BATON_SOCKET_DIR: directory of upgrade sockets;
 * - BATON_READY: `auto` (default: ready once no listen() came for
 *   BATON_READY_QUIET_MS, default 100) or `explicit` (the app calls adoptedReady());
 * - BATON_READY_TIMEOUT_MS: an app that never listens is reported (default 30000);
 * - BATON_LOG: `text` (lines on stderr) or `json` (JSON lines on stderr); default
 *   text when stderr is a terminal, JSON otherwise.
 */
import path from 'node:path';
import { Defaults } from '../core/options.js';
import { installAdoption, startBeforeApp } from './adoption.js';
import { defaultAppName } from './app-name.js';

const env = process.env;
const entry = process.argv[1] ? path.resolve(process.argv[1]) : path.resolve('index.js');
const name = env.BATON_NAME || defaultAppName(entry);
const json = env.BATON_LOG === 'json' || (env.BATON_LOG !== 'text' && !process.stderr.isTTY);
const consistency = env.BATON_CONSISTENCY === '1';
const positive = (v: string | undefined, d: number) => (v !== undefined && Number(v) > 0 ? Number(v) : d);

installAdoption({
  name,
  socketDir: env.BATON_SOCKET_DIR,
  ready: env.BATON_READY === 'explicit' ? 'explicit' : 'auto',
  quietMs: positive(env.BATON_READY_QUIET_MS, 100),
  readyTimeoutMs: positive(env.BATON_READY_TIMEOUT_MS, 30_000),
  appEntry: entry,
  namedOnPurpose: Boolean(env.BATON_NAME),
  consistency,
  livenessMs: env.BATON_LIVENESS_MS === undefined ? undefined : positive(env.BATON_LIVENESS_MS, Defaults.livenessTimeoutMs),
  // Checked by start() (an integer of at least 2): a bad value fails the app's start with a message naming it.
  maxGenerations: env.BATON_MAX_GENERATIONS === undefined ? undefined : Number(env.BATON_MAX_GENERATIONS),
  report: (event, data, text) => {
    process.stderr.write(json ? `${JSON.stringify({ event, pid: process.pid, ...data })}\n` : `[baton pid ${process.pid}] ${text}\n`);
  },
});

// Top-level await: Node evaluates the app's main module only after this preload settled.
if (consistency && !(await startBeforeApp())) {
  process.exitCode = 1;
  process.exit();
}
