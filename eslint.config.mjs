// typescript-eslint with the type-checked recommended rules (issue 15), run by
// `npm run lint` and in CI (scripts/test.sh). Only the TypeScript sources are
// linted; dist/, node_modules and generated files are not.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/build/**', 'bpf/**', '**/*.js', '**/*.mjs'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
  },
  {
    // tap's t.test() returns a promise the harness itself tracks, and async
    // subtest callbacks without an await are the tap idiom.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
);
