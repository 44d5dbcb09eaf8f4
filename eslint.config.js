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
    files: ['test/**', 'bench/**', 'examples/**', 'src/cli/**'],
    rules: { 'no-restricted-properties': 'off' },
  },
);
