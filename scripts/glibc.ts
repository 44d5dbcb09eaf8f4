/**
 * The glibc a native binary needs: the symbol versions it imports (GLIBC_2.28 …), read with
 * `readelf` (binutils), which reads ELF files of any architecture.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';

/**
 * The oldest glibc the prebuilds support: that of Debian 10, RHEL 8 and Ubuntu 20.04 (2.31 there),
 * and the minimum of Node.js's own Linux binaries since Node 18. docs/deploy.md states it.
 */
export const GLIBC_MINIMUM = '2.28';

/** One imported symbol and the glibc version that defines it. */
export interface GlibcNeed {
  readonly symbol: string;
  readonly version: string;
}

/** Compares dotted versions numerically (`2.9` < `2.10`): negative, 0 or positive. */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Every undefined dynamic symbol of `file` bound to a GLIBC_ version. Throws when readelf fails. */
export function glibcNeeds(file: string): GlibcNeed[] {
  const out = execFileSync('readelf', ['--dyn-syms', '--wide', file], { encoding: 'utf8' });
  const needs: GlibcNeed[] = [];
  for (const line of out.split('\n')) {
    // "    12: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND fcntl64@GLIBC_2.28 (5)"
    const match = / UND ([^@\s]+)@GLIBC_([0-9.]+)/.exec(line);
    if (match) needs.push({ symbol: match[1] as string, version: match[2] as string });
  }
  return needs;
}

/** The needs of `file` newer than `minimum` (empty when the binary runs on that glibc). */
export function tooNewForGlibc(file: string, minimum: string = GLIBC_MINIMUM): GlibcNeed[] {
  return glibcNeeds(file).filter((need) => compareVersions(need.version, minimum) > 0);
}
