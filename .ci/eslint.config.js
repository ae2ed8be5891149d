// Lint rules for the whole repository. Type-aware rules are on because the two bugs that have crashed
// long-running MQTT daemons in the field (floating promises, promises passed where a callback is
// expected) are only caught with type information.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.ci/**',
      'daemon/bin/**',
      'provisioning/bin/**',
      'console/vite.config.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: new URL('..', import.meta.url).pathname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Everything the daemon says goes through pino; the CLI writes to stdout/stderr explicitly.
      'no-console': 'error',
      // A constructor takes one named deps object (STYLE.md: telemetry/sampler.ts), not a long
      // positional list where everything reaches everything and `undefined` fills the gaps.
      'no-restricted-syntax': [
        'error',
        {
          selector: "MethodDefinition[kind='constructor'] > FunctionExpression[params.length>3]",
          message: 'a constructor takes at most 3 parameters: pass one named deps object instead',
        },
      ],
    },
  },
  {
    // Only the process shells touch process-wide state (docs/architecture.md, "Dependency rules"): the
    // daemon's (main.ts), the command's (cli.ts) and the worker processes' entries. A room that set an
    // exit code or caught a signal would fight main.ts's shutdown.
    files: ['daemon/src/**/*.ts'],
    ignores: [
      'daemon/src/main.ts',
      'daemon/src/cli.ts',
      'daemon/src/camera/worker.ts',
      'daemon/src/gst/job-worker.ts',
    ],
    rules: {
      'no-restricted-properties': [
        'error',
        ...['exit', 'exitCode', 'abort', 'kill', 'chdir', 'umask']
          .concat([
            'on',
            'once',
            'off',
            'addListener',
            'prependListener',
            'removeListener',
            'removeAllListeners',
          ])
          .map((property) => ({
            object: 'process',
            property,
            message:
              'only main.ts, cli.ts and the worker entries touch process-wide state: return or throw instead',
          })),
      ],
    },
  },
  {
    // The viewer page's script runs in the browser as it is (no build step): plain JavaScript, outside
    // the TypeScript project, so no type-aware rules; browser globals.
    files: ['bench/latency/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: null },
      sourceType: 'module',
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'fetch', 'performance', 'setTimeout', 'setInterval', 'console']
          .concat(['URLSearchParams', 'RTCPeerConnection', 'MediaStream'])
          .map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    // The page never imports daemon code: only the topic contract it shares with the daemon.
    files: ['console/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(\\.\\./)+daemon/src/(?!mqtt/(contract|topics)\\.js$)',
              message: 'the console imports only the topic contract (daemon/src/mqtt/contract.ts, topics.ts)',
            },
            {
              regex: '^(\\.\\./)+(provisioning|test|bench)/',
              message: 'the console imports no repository code',
            },
            { regex: '^node:', message: 'the console runs in a browser' },
          ],
        },
      ],
    },
  },
  {
    // The topic contract is shared with the page: zod and each other only, no Node, no daemon code.
    files: ['daemon/src/mqtt/contract.ts', 'daemon/src/mqtt/topics.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!zod$|\\./(contract|topics)\\.js$)',
              message: 'the contract imports only zod (the page imports it)',
            },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'Buffer', 'process', 'require'],
    },
  },
  {
    // Benchmarks print their figures for a person.
    files: ['bench/**'],
    rules: { 'no-console': 'off' },
  },
);
