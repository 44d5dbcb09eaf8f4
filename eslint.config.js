import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      // Library code never ends the process: see docs/architecture.md.
      'no-restricted-properties': ['error', { object: 'process', property: 'exit', message: 'library code must not call process.exit' }],
    },
  },
  {
    // Unmodified CommonJS apps that tests run under baton.
    files: ['test/apps/**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Hosts own their process: the CLI, and zero-code adoption (preloaded into the app's process).
    files: ['test/**', 'bench/**', 'examples/**', 'src/cli/**', 'src/adopt/**'],
    rules: { 'no-restricted-properties': 'off' },
  },
);
