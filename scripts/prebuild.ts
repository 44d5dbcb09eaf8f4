/**
 * `npm run prebuilds` (and `npm pack`'s prepack): builds the Node-API prebuilds that ship inside
 * the package, with prebuildify, into `prebuilds/<platform>-<arch>/` where node-gyp-build finds
 * them. One build per target serves every Node line (Node-API is ABI-stable).
 *
 * Each target is compiled with its GNU cross toolchain (`<triple>-gcc`, Debian's
 * gcc-aarch64-linux-gnu for arm64) against the headers of the running Node (npm's `nodedir`, else
 * the running Node's own include/), in a scratch copy of the sources so that the developer's
 * `build/Release` is left alone. A target whose compiler is missing is skipped with a notice,
 * unless `--all` is given (what a release needs). A prebuild that needs a glibc newer than
 * {@link GLIBC_MINIMUM} fails the run and is deleted.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GLIBC_MINIMUM, tooNewForGlibc } from './glibc.js';

/** One prebuild: a Linux architecture and the GNU triple of its toolchain. */
export interface PrebuildTarget {
  readonly arch: 'x64' | 'arm64';
  readonly triple: string;
}

/** What the package ships: glibc Linux on x64 and arm64. */
export const TARGETS: readonly PrebuildTarget[] = [
  { arch: 'x64', triple: 'x86_64-linux-gnu' },
  { arch: 'arm64', triple: 'aarch64-linux-gnu' },
];

/** The repository root (this file is scripts/prebuild.ts, run as dist/scripts/prebuild.js). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The prebuild node-gyp-build loads for `arch` on glibc. */
export function prebuildPath(arch: string, root: string = REPO_ROOT): string {
  return path.join(root, 'prebuilds', `linux-${arch}`, 'baton.glibc.node');
}

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v "$1" >/dev/null`, 'sh', command]).status === 0;
}

/** Node headers for node-gyp: npm's nodedir, else the running Node's installation. */
function nodeDir(): string {
  const configured = process.env.npm_config_nodedir;
  if (configured) return configured;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) return prefix;
  throw new Error(`no Node headers: set npm_config_nodedir (none in ${prefix}/include/node)`);
}

/** Builds one target into `<root>/prebuilds`; returns the file. */
function build(target: PrebuildTarget, root: string): string {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-prebuild-'));
  try {
    for (const entry of ['package.json', 'binding.gyp', 'native']) {
      fs.cpSync(path.join(root, entry), path.join(scratch, entry), { recursive: true });
    }
    const tool = (name: string) => `${target.triple}-${name}`;
    const prebuildify = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
    const args = [prebuildify, '--napi', '--strip', '--tag-libc', `--arch=${target.arch}`, `--out=${scratch}`, scratch];
    // node-gyp's log is long: shown only when the build fails.
    const result = spawnSync(process.execPath, args, {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      env: {
        ...process.env,
        npm_config_nodedir: nodeDir(),
        CC: tool('gcc'),
        CXX: tool('g++'),
        LINK: tool('g++'),
        PREBUILD_STRIP_BIN: tool('strip'),
        // prebuildify finds node-gyp through node_modules/.bin of the package it builds.
        PREBUILD_NODE_GYP: path.join(root, 'node_modules', '.bin', 'node-gyp'),
      },
    });
    if (result.status !== 0) {
      process.stderr.write(`${result.stdout ?? ''}${result.stderr ?? ''}`);
      throw new Error(`prebuildify for linux-${target.arch} failed (exit ${result.status ?? result.signal})`);
    }
    const dir = path.join(scratch, 'prebuilds', `linux-${target.arch}`);
    const built = fs.readdirSync(dir).filter((name) => name.endsWith('.node'));
    if (built.length !== 1) throw new Error(`prebuildify left ${built.length} binaries in ${dir}`);
    const file = prebuildPath(target.arch, root);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.copyFileSync(path.join(dir, built[0] as string), file);
    const tooNew = tooNewForGlibc(file);
    if (tooNew.length > 0) {
      fs.rmSync(file);
      const list = tooNew.map((need) => `${need.symbol}@GLIBC_${need.version}`).join(', ');
      throw new Error(`linux-${target.arch} prebuild needs a glibc newer than ${GLIBC_MINIMUM}: ${list}`);
    }
    return file;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function main(argv: readonly string[]): void {
  const all = argv.includes('--all');
  for (const target of TARGETS) {
    if (!onPath(`${target.triple}-gcc`) || !onPath(`${target.triple}-g++`)) {
      const message = `no ${target.triple}-gcc/g++: linux-${target.arch} prebuild not built (Debian: apt-get install g++-${target.triple.replace(/_/g, '-')})`;
      if (all) throw new Error(message);
      process.stderr.write(`prebuilds: ${message}\n`);
      continue;
    }
    const file = build(target, REPO_ROOT);
    process.stderr.write(`prebuilds: ${path.relative(REPO_ROOT, file)} (glibc ≤ ${GLIBC_MINIMUM})\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
