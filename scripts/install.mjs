#!/usr/bin/env node
// npm's install step for baton (package.json "install"). In order:
// 1. an addon that loads already (a prebuild for this platform in prebuilds/, or an earlier build
//    in build/Release) is used as is: nothing is compiled;
// 2. otherwise, with a C toolchain and python3 on PATH, node-gyp builds it from native/ (a failed
//    build fails the install, as a compile error should);
// 3. otherwise the install succeeds with one warning, and baton's first use throws
//    ERR_BATON_NATIVE_UNAVAILABLE naming the platform and what to install (src/native/binding.ts):
//    an install that fails outright would also break every package that merely depends on baton.
// `npm install --build-from-source` (npm_config_build_from_source) skips step 1.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);

/** The addon file node-gyp-build would load here, if it loads in a fresh Node process. */
function loadableAddon() {
  let file;
  try {
    file = require('node-gyp-build').path(root);
  } catch {
    return undefined; // no prebuild for this platform and no build
  }
  // In a child: a prebuild that needs a newer glibc must not take this process down.
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'ignore' });
  return probe.status === 0 ? file : undefined;
}

/** The commands node-gyp needs that are not on PATH. */
function missingTools() {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const onPath = (name) => dirs.some((dir) => existsSync(path.join(dir, name)));
  const tools = [process.env.CC ?? 'cc', process.env.CXX ?? 'c++', 'make', 'python3'];
  return tools.filter((tool) => !(path.isAbsolute(tool) ? existsSync(tool) : onPath(tool)));
}

const fromSource = process.env.npm_config_build_from_source === 'true';
if (fromSource || loadableAddon() === undefined) {
  const missing = missingTools();
  if (missing.length > 0) {
    const libc = process.env.LIBC ?? (existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
    process.stderr.write(
      `baton: no prebuilt native addon for ${process.platform}-${process.arch} (${libc}) and no toolchain to build one ` +
        `(missing: ${missing.join(', ')}); baton will not run here until you install them (Debian/Ubuntu: ` +
        'apt-get install build-essential python3; Alpine: apk add build-base python3) and run `npm rebuild baton`\n',
    );
  } else {
    // npm puts its bundled node-gyp on PATH for lifecycle scripts.
    const build = spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit' });
    if (build.error) throw build.error;
    process.exitCode = build.status ?? 1;
  }
}
