/**
 * Node's module compile cache (Node ≥ 22.1, `NODE_COMPILE_CACHE`) for the
 * processes baton starts as successors: `baton run`'s app processes and the
 * library's exec path. A successor compiles the same modules as the
 * generation before it (baton's preload, the app, its dependencies); with the
 * cache, V8's code for them is read from disk instead of being compiled again,
 * which shortens the successor's start — the larger part of an upgrade's time.
 *
 * The cache lives in `<default upgrade socket directory>/compile-cache`, a
 * directory private to this uid (mode 0700, checked as the socket directory
 * is): another user must not be able to plant code there. Opt out with
 * `BATON_COMPILE_CACHE=0`; a `NODE_COMPILE_CACHE` already set is the user's
 * choice and is kept. On a Node without the cache nothing is set.
 */
import module from 'node:module';
import path from 'node:path';
import { defaultSocketDir, ensurePrivateDir } from './upgrade-socket.js';

/** Whether this Node has the module compile cache (`module.enableCompileCache`, Node ≥ 22.1). */
export const compileCacheSupported = typeof (module as { enableCompileCache?: unknown }).enableCompileCache === 'function';

/**
 * The variables to add to a successor's environment `env` so it uses the
 * compile cache: `{ NODE_COMPILE_CACHE: dir }`, or nothing when opted out
 * (BATON_COMPILE_CACHE=0), already chosen (NODE_COMPILE_CACHE set), not
 * supported (`supported` false), or when the private directory cannot be made
 * or is not private (the successor then starts without a cache — it is an
 * optimisation, never a reason to fail an upgrade). Creates the directory.
 */
export function compileCacheEnv(env: NodeJS.ProcessEnv, supported = compileCacheSupported): NodeJS.ProcessEnv {
  if (!supported || env.BATON_COMPILE_CACHE === '0' || env.NODE_COMPILE_CACHE) return {};
  const dir = path.join(defaultSocketDir(env), 'compile-cache');
  try {
    ensurePrivateDir(path.dirname(dir));
    ensurePrivateDir(dir);
  } catch {
    return {};
  }
  return { NODE_COMPILE_CACHE: dir };
}
