/**
 * The module graph of src/ (`npm run lint` runs `depcruise` with this): no
 * import cycle, neither between files nor between folders, both errors; the
 * library's root files (start.ts, generation.ts, host.ts, index.ts) sit
 * between the layers below them and the hosts above (docs/architecture.md,
 * "Module graph"). Type-only imports count: a cycle of types is a cycle of
 * concepts. No baseline of known violations: a cycle fails the lint.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-file-cycle',
      comment: 'Files of src/ import each other (directly or through others): move what both need into a module of its own.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-folder-cycle',
      comment: 'Folders of src/ import each other: a lower layer must not reach into a higher one.',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
    // dependency-cruiser's folder scope does not see the files at the root of src/ (start.ts,
    // generation.ts, host.ts, index.ts) as a folder of their own: two rules keep that layer in its place.
    {
      name: 'no-library-root-from-below',
      comment:
        'The library root (start.ts, generation.ts, host.ts, index.ts) sits above core/ … platform/ and below observe/ and the hosts (adopt/, supervisor/, cli/): a folder below that imports it makes a cycle.',
      severity: 'error',
      from: { path: '^src/(core|native|protocol|listeners|drain|migrate|handover|platform)/' },
      to: { path: '^src/[^/]+\\.ts$' },
    },
    {
      name: 'no-hosts-from-library-root',
      comment:
        'The hosts (adopt/: zero-code, supervisor/, cli/) and observe/ (metrics) build on the library: its root files must not import them; a host reaches the library through host.ts.',
      severity: 'error',
      from: { path: '^src/[^/]+\\.ts$' },
      to: { path: '^src/(observe|adopt|supervisor|cli)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|build|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
