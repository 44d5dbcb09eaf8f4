/**
 * Fresh private directories for tests, removed when they are done.
 *
 * Under node:test, a directory made while a test runs is removed once that
 * test has ended with all its own `after` hooks (processes it killed there
 * included): when the next top-level test starts, or when the test file's
 * process exits. A directory made outside any test (at module level) is
 * removed at exit. When a test failed and `BATON_KEEP_TEST_DIRS=1` is set, the
 * directories of that test are kept and their paths printed to stderr.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach } from 'node:test';

/** Set to 1 to keep the directories of failed tests for a look. */
export const KEEP_TEST_DIRS_ENV = 'BATON_KEEP_TEST_DIRS';

/** Tests running now (subtests nest). */
let depth = 0;
/** Directories of the tests that ran since the last cleanup, and whether one of them failed. */
const made: string[] = [];
let failed = false;
/** Directories made outside any test: removed at exit. */
const fileLevel: string[] = [];

/** Directories a cleanup could not remove yet (a process of the test still writing there as it exits): tried again at exit. */
const busy: string[] = [];

function remove(dirs: string[], keep: boolean, last = false): void {
  for (const dir of dirs.splice(0)) {
    if (keep) {
      process.stderr.write(`kept the directory of a failed test: ${dir}\n`);
      continue;
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      // Cleaning up never fails a test: ENOTEMPTY while an exiting app still writes its files.
      if (!last) busy.push(dir);
      else process.stderr.write(`could not remove the test directory ${dir}: ${(err as Error).message}\n`);
    }
  }
}

function cleanup(): void {
  remove(made, failed && process.env[KEEP_TEST_DIRS_ENV] === '1');
  failed = false;
}

// Only in a process the test runner started (bench/ and the faults suite use these helpers too).
if (process.env.NODE_TEST_CONTEXT !== undefined || process.execArgv.includes('--test')) {
  beforeEach(() => {
    if (depth++ === 0) cleanup(); // the previous test and its after hooks are done
  });
  afterEach((t) => {
    depth--;
    // TestContext#passed (Node ≥ 20.16); @types/node 20 does not declare it yet.
    if ((t as { passed?: boolean }).passed === false) failed = true;
  });
}
process.once('exit', () => {
  cleanup();
  remove(fileLevel, process.exitCode !== undefined && process.exitCode !== 0 && process.env[KEEP_TEST_DIRS_ENV] === '1');
  remove(busy, false, true);
});

/** A fresh private (0700) directory for one test (never a fixed /tmp path); removed after the test (see the module comment). */
export function tempDir(prefix = 'baton-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o700);
  (depth > 0 ? made : fileLevel).push(dir);
  return dir;
}
