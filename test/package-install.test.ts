/**
 * The package as a user gets it, on the Node that runs the suite (.ci/run runs the suite on every
 * supported line): `npm pack` (its prepack builds the JS and the prebuilds) holds the built JS,
 * types, prebuilds and the sources of a from-source build, nothing else; installed from the tarball
 * into an empty directory whose PATH has no compiler, make or python, nothing is compiled, every
 * export resolves with types, and `baton run server.js` (examples/Dockerfile's CMD) goes through a takeover upgrade under load
 * with 0 failed requests, then one by SIGUSR2 and a stop by SIGTERM as examples/Dockerfile does. Without a prebuild for the platform (musl, as on Alpine) the install
 * still succeeds with one warning, and `baton run` fails with one line naming the platform and
 * what to install, no stack trace; with a toolchain, `npm rebuild` builds it from source.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT } from '../scripts/prebuild.js';
import { AppRunner } from './helpers/adopt.js';
import { HttpLoad } from './helpers/http-load.js';
import { EventLog, killAll, tempDir } from './helpers/server-process.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
};

/** Every file the tarball may hold (paths inside it, under package/). */
const ALLOWED = [
  /^package\/(package\.json|README\.md|LICENSE|binding\.gyp)$/,
  /^package\/dist\/src\/.+\.(js|d\.ts)$/,
  /^package\/dist\/examples\/example-server\.(js|d\.ts)$/,
  /^package\/prebuilds\/linux-(x64|arm64)\/baton\.glibc\.node$/,
  /^package\/native\/baton_native\.c$/,
  /^package\/scripts\/install\.mjs$/,
];

/** Commands a build from source needs; none may be on the user's PATH here. */
const TOOLCHAIN = ['cc', 'gcc', 'c++', 'g++', 'clang', 'make', 'python3', 'python'];

/** Plain tools a slim image has besides node and npm. */
const BASIC_TOOLS = ['sh', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'chmod', 'ln', 'uname', 'tar', 'gzip'];

const work = tempDir('baton-package-');
const log = new EventLog();
let tarball = '';
let bareBin = '';
let appDir = '';
let runner: AppRunner | undefined;

after(() => {
  killAll(log.events.map((e) => e.pid));
  runner?.killAll();
  fs.rmSync(work, { recursive: true, force: true });
});

const which = (command: string, PATH = process.env.PATH ?? ''): string | undefined => {
  const found = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], { env: { PATH }, encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
};

/** A directory of symlinks: this Node as `node`, npm, and basic tools — no toolchain. */
function bareBinDir(): string {
  const dir = path.join(work, 'bin');
  fs.mkdirSync(dir);
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  fs.symlinkSync(fs.realpathSync(which('npm')!), path.join(dir, 'npm'));
  for (const tool of BASIC_TOOLS) {
    const found = which(tool);
    if (found) fs.symlinkSync(found, path.join(dir, tool));
  }
  return dir;
}

/**
 * The certificates this machine trusts for the registry, as the user's own environment has them:
 * the npm of another Node line reads no global npmrc of this machine's npm (its prefix differs).
 */
const trust: NodeJS.ProcessEnv = Object.fromEntries(
  [
    ['NODE_EXTRA_CA_CERTS', process.env.NODE_EXTRA_CA_CERTS],
    ['npm_config_cafile', process.env.npm_config_cafile ?? process.env.NODE_EXTRA_CA_CERTS],
  ].filter(([, v]) => v !== undefined && v !== ''),
);

/** Runs a command in the user's environment: the bare PATH, npm's cache offline where it can be. */
function asUser(command: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(command, args, {
    cwd: appDir,
    encoding: 'utf8',
    timeout: 240_000,
    env: {
      HOME: process.env.HOME,
      PATH: bareBin,
      npm_config_prefer_offline: 'true',
      npm_config_update_notifier: 'false',
      ...trust,
      ...env,
    },
  });
}

/** The exec-form CMD of examples/Dockerfile. */
function dockerfileCmd(): string[] {
  const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'examples', 'Dockerfile'), 'utf8');
  const line = /^CMD (\[.*\])$/m.exec(dockerfile);
  assert.ok(line, 'examples/Dockerfile has an exec-form CMD');
  return JSON.parse(line[1]!) as string[];
}

before(() => {
  const npm = which('npm')!;
  // A real `npm pack`: prepack builds the JS and the prebuilds this machine can build.
  execFileSync(npm, ['pack', '--silent', '--pack-destination', work], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  tarball = path.join(work, `${pkg.name}-${pkg.version}.tgz`);
  assert.ok(fs.existsSync(tarball), `npm pack wrote ${tarball}`);
  bareBin = bareBinDir();
  appDir = path.join(work, 'app');
  fs.mkdirSync(appDir);
  fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'user-app', private: true, version: '1.0.0' }));
  fs.writeFileSync(
    path.join(appDir, 'server.js'),
    [
      "const http = require('node:http');",
      'const server = http.createServer((req, res) => {',
      "  res.setHeader('x-pid', String(process.pid));",
      "  res.end('user app ' + process.pid + '\\n');",
      '});',
      "server.listen(Number(process.env.PORT || 0), '127.0.0.1');",
      '',
    ].join('\n'),
  );
});

test('npm pack: built JS, types, prebuilds and the from-source build inputs, nothing else', () => {
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n');
  const stray = files.filter((file) => !ALLOWED.some((pattern) => pattern.test(file)));
  assert.deepEqual(stray, [], 'no tests, benches, fixtures, source maps or sources beyond native/');
  const inside = (file: string) => files.includes(path.posix.join('package', file));
  assert.ok(inside(`prebuilds/linux-${process.arch}/baton.glibc.node`), `a prebuild for this machine (linux-${process.arch})`);
  for (const [entry, target] of Object.entries(pkg.exports)) {
    for (const file of typeof target === 'string' ? [target] : [target.types, target.default]) {
      assert.ok(inside(file), `export ${entry}: ${file} is in the tarball`);
    }
  }
  for (const file of Object.values(pkg.bin)) assert.ok(inside(file), `bin ${file} is in the tarball`);
});

test('installed from the tarball with no toolchain on PATH: nothing compiled, every export resolves with types', () => {
  for (const tool of TOOLCHAIN) assert.equal(which(tool, bareBin), undefined, `${tool} must not be on the user's PATH`);
  const install = asUser('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', tarball]);
  assert.equal(install.status, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`);
  assert.doesNotMatch(install.stdout + install.stderr, /no prebuilt native addon/);
  const installed = path.join(appDir, 'node_modules', 'baton');
  assert.ok(!fs.existsSync(path.join(installed, 'build')), 'no build from source');

  const probe = asUser('node', [
    '--input-type=module',
    '-e',
    [
      "const baton = await import('baton');",
      "await import('baton/register').catch(() => {});", // the preload needs an app; resolving is what counts
      "const { createRequire } = await import('node:module');",
      "const require = createRequire(process.cwd() + '/');",
      "console.log(JSON.stringify({ start: typeof baton.start, cli: require.resolve('baton/cli') }));",
    ].join('\n'),
  ]);
  assert.equal(probe.status, 0, probe.stderr);
  const seen = JSON.parse(probe.stdout.trim().split('\n').pop()!) as { start: string; cli: string };
  assert.equal(seen.start, 'function');
  assert.equal(seen.cli, path.join(installed, 'dist', 'src', 'cli', 'main.js'));

  // Types: a TypeScript user's imports of every entry type-check (node16 resolution reads `exports`).
  fs.writeFileSync(
    path.join(appDir, 'check.mts'),
    [
      "import { start, type Generation } from 'baton';",
      "import type * as Register from 'baton/register';",
      "import type * as Cli from 'baton/cli';",
      'export type Entries = [typeof start, Generation, typeof Register, typeof Cli];',
      '',
    ].join('\n'),
  );
  const tsc = spawnSync(
    process.execPath,
    [
      path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--typeRoots',
      path.join(REPO_ROOT, 'node_modules', '@types'),
      '--types',
      'node',
      'check.mts',
    ],
    { cwd: appDir, encoding: 'utf8' },
  );
  assert.equal(tsc.status, 0, `types of the exports:\n${tsc.stdout}${tsc.stderr}`);
});

test('baton run server.js from the installed package, as examples/Dockerfile runs it: takeover upgrades under load, 0 failed requests', async (t) => {
  // The command examples/Dockerfile runs (its CMD), in the app's directory as there.
  const cmd = dockerfileCmd();
  assert.deepEqual(cmd.slice(1), ['run', 'server.js'], 'the Dockerfile runs `baton run server.js`');
  runner = new AppRunner(log, { command: [path.join(appDir, cmd[0]!)], env: { PATH: bareBin, NODE_ENV: 'production' } });
  const app = path.join(appDir, 'server.js');
  const dir = tempDir('baton-package-run-');
  const first = await runner.run(dir, app).ready();
  const load = new HttpLoad(`http://127.0.0.1:${runner.portOf(first.pid)}`, 16);
  t.after(() => load.stop());
  await load.waitForMore(100);
  // Upgrade 1: the same command run again.
  const second = await runner.upgrade(dir, app, first.pid);
  await load.waitForMore(100);
  // Upgrade 2, as examples/Dockerfile does it (`docker exec app kill -USR2 1`): SIGUSR2 to baton run.
  const wrapper = runner.children.at(-1)!;
  const since = log.events.length;
  wrapper.kill('SIGUSR2');
  const third = (await log.waitFor((e) => e.event === 'ready' && e.pid !== second, 'the SIGUSR2 successor ready', 30_000, since)).pid;
  await log.waitFor((e) => e.event === 'drained' && e.pid === second, `pid ${second} drained`, 30_000, since);
  await load.waitForMore(100);
  const result = await load.stop();
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  for (const pid of [first.pid, second, third]) assert.ok(result.pids.has(pid), `generation pid ${pid} served`);
  // `docker stop`: SIGTERM to baton run, which drains its app and exits 0.
  const exited = once(wrapper, 'exit');
  wrapper.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  assert.equal(code, 0, 'baton run exits 0 on SIGTERM');
});

test('no prebuild for the platform and no toolchain: install warns once, baton run fails with one clear line', async () => {
  // node-gyp-build picks prebuilds by libc; as on Alpine, there is no musl prebuild.
  const rebuild = asUser('npm', ['rebuild', 'baton', '--foreground-scripts'], { LIBC: 'musl' });
  assert.equal(rebuild.status, 0, `the install step must not fail:\n${rebuild.stdout}\n${rebuild.stderr}`);
  assert.match(
    rebuild.stdout + rebuild.stderr,
    /no prebuilt native addon for linux-\w+ \(musl\) and no toolchain to build one \(missing: /,
  );

  const baton = path.join(appDir, 'node_modules', '.bin', 'baton');
  const child = spawn(baton, ['run', 'server.js'], {
    cwd: appDir,
    env: { HOME: process.env.HOME, PATH: bareBin, LIBC: 'musl', PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdout.resume();
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.notEqual(code, 0, 'baton run fails');
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, no stack trace:\n${stderr}`);
  assert.match(lines[0]!, /native addon is not available for linux-\w+ \(musl\), Node v\d+/);
  assert.match(lines[0]!, /apk add build-base python3/);
  assert.match(lines[0]!, /ERR_BATON_NATIVE_UNAVAILABLE/);
});

test('no prebuild for the platform but a toolchain: npm rebuild builds the addon from source, and it loads', () => {
  const installed = path.join(appDir, 'node_modules', 'baton');
  // The test's own PATH has cc, make and python3 (and npm's node-gyp is on it during the install step).
  const rebuild = spawnSync(which('npm')!, ['rebuild', 'baton', '--foreground-scripts'], {
    cwd: appDir,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, LIBC: 'musl' },
  });
  assert.equal(rebuild.status, 0, `${rebuild.stdout}\n${rebuild.stderr}`);
  assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'baton_native.node')), 'built from native/');
  const load = asUser('node', ['-e', "require('node-gyp-build')(require('node:path').dirname(require.resolve('baton/package.json')))"], {
    LIBC: 'musl',
  });
  assert.equal(load.status, 0, load.stderr);
});
