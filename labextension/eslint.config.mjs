// ESLint for the lab extension's TypeScript (`npm run lint`, part of `make lint`).
// The recommended rules of ESLint and typescript-eslint, type-aware, on src/ only.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/**', 'node_modules/**', '../nbserve/labextension/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['src/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    }
  }
);
