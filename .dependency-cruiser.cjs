/**
 * The module graph of src/ (`npm run lint` runs `depcruise` with this): no
 * import cycle, neither between files nor between folders; each layer builds
 * on those below it only (docs/architecture.md, "Module graph"). Type-only
 * imports count: a cycle of types is a cycle of concepts.
 *
 * Cycles known when this check came, still to be taken apart (issue 14), are
 * reported but do not fail the lint: between files, those listed in
 * .dependency-cruiser-known-violations.json (dependency-cruiser's baseline,
 * `--ignore-known`: a new file cycle fails; regenerate it with
 * `depcruise src --config .dependency-cruiser.cjs --output-type baseline
 * --output-to .dependency-cruiser-known-violations.json` once one is gone).
 * Between folders — which the baseline cannot hold — `no-folder-cycle` is a
 * warning until the known ones are gone (migrate/ ↔ drain/, adopt/ ↔
 * supervisor/, and those through observe/: core/failpoint.ts →
 * observe/channels.ts, observe/master-metrics.ts ↔ supervisor/): then make it
 * an error.
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
      severity: 'warn',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
    // dependency-cruiser's folder scope does not see the files at the root of src/ (start.ts,
    // generation.ts, index.ts) as a folder of their own: two rules keep that layer in its place.
    {
      name: 'no-library-root-from-below',
      comment:
        'start.ts, generation.ts and index.ts sit above every folder of src/ except the hosts (adopt/, cli/): a folder below that imports them makes a cycle.',
      severity: 'error',
      from: { path: '^src/(core|native|protocol|listeners|drain|migrate|handover|supervisor)/' },
      to: { path: '^src/[^/]+\\.ts$' },
    },
    {
      name: 'no-hosts-from-library-root',
      comment: 'The hosts (adopt/: zero-code, cli/) build on the library: its root files must not import them.',
      severity: 'error',
      from: { path: '^src/[^/]+\\.ts$' },
      to: { path: '^src/(adopt|cli)/' },
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
