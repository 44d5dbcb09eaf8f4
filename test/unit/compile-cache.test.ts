/**
 * The compile cache baton gives its successors (src/handover/compile-cache.ts):
 * a private directory under the default socket directory, the user's opt-out
 * and own choice kept, nothing where Node has no cache or the directory is not
 * private; and, on a Node that has the cache, a successor started with it
 * writes its compiled code there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { compileCacheEnv, compileCacheSupported } from '../../src/handover/compile-cache.js';

function runtimeDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'baton-compile-cache-test-'));
}

test('the cache is a private directory under the default socket directory', () => {
  const runtime = runtimeDir();
  const env = compileCacheEnv({ XDG_RUNTIME_DIR: runtime }, true);
  const dir = path.join(runtime, 'baton', 'compile-cache');
  assert.deepEqual(env, { NODE_COMPILE_CACHE: dir });
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  assert.equal(fs.statSync(path.dirname(dir)).mode & 0o777, 0o700);
  fs.rmSync(runtime, { recursive: true });
});

test('opted out, chosen by the user, unsupported, or not private: nothing is set', () => {
  const runtime = runtimeDir();
  assert.deepEqual(compileCacheEnv({ XDG_RUNTIME_DIR: runtime, BATON_COMPILE_CACHE: '0' }, true), {});
  assert.deepEqual(compileCacheEnv({ XDG_RUNTIME_DIR: runtime, NODE_COMPILE_CACHE: '/elsewhere' }, true), {});
  assert.deepEqual(compileCacheEnv({ XDG_RUNTIME_DIR: runtime }, false), {});
  assert.equal(fs.existsSync(path.join(runtime, 'baton')), false, 'no directory made when no cache is used');
  // A directory others can enter could hold their code: no cache rather than theirs.
  fs.mkdirSync(path.join(runtime, 'baton'), { mode: 0o755 });
  fs.chmodSync(path.join(runtime, 'baton'), 0o755);
  assert.deepEqual(compileCacheEnv({ XDG_RUNTIME_DIR: runtime }, true), {});
  fs.rmSync(runtime, { recursive: true });
});

test(
  'a process started with the cache writes its compiled modules there',
  { skip: !compileCacheSupported && `Node ${process.version} has no module compile cache` },
  () => {
    const runtime = runtimeDir();
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtime };
    delete env.NODE_COMPILE_CACHE;
    delete env.BATON_COMPILE_CACHE;
    const extra = compileCacheEnv(env);
    const app = path.join(runtime, 'app.cjs');
    fs.writeFileSync(app, 'module.exports = function add(a, b) { return a + b; };\n');
    execFileSync(process.execPath, [app], { env: { ...env, ...extra } });
    const files = fs.readdirSync(extra.NODE_COMPILE_CACHE!, { recursive: true });
    assert.ok(files.length > 0, `cache files in ${extra.NODE_COMPILE_CACHE}`);
    fs.rmSync(runtime, { recursive: true });
  },
);
