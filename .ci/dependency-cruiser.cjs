// The dependency rules of docs/architecture.md ("Dependency rules"), as a dependency-cruiser rule set
// that `npm test` runs (`npm run deps`) over the whole tree. Each rule says what it keeps and why;
// test/deps/rules.test.ts shows that each one fails on the import it forbids.
//
// Paths are relative to the repository root. `type-only` imports (`import type`) vanish from the
// built JavaScript, so the one-importer rules allow them; the cycle rule counts them too, because a
// type cycle is still two modules that cannot be read one without the other.

/** A module of the daemon other than `files` (paths under daemon/src/). */
const daemonExcept = (...files) => ({
  path: '^daemon/src/',
  pathNot: `^daemon/src/(${files.map((file) => file.replace(/[.]/g, '\\.')).join('|')})$`,
});

/** The one file of daemon/src allowed to load `module` (an npm package or a Node built-in). */
const onlyImporter = (name, module, files, comment) => ({
  name,
  comment,
  severity: 'error',
  from: daemonExcept(...files),
  to: {
    path: module.core ? `^${module.core}$` : `(^|/)node_modules/${module.npm}/`,
    ...(module.core ? { dependencyTypes: ['core'] } : {}),
    dependencyTypesNot: ['type-only'],
  },
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No import cycles anywhere: each module can be read, tested and moved without its importers.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment:
        "An import that resolves to nothing is a typo or a missing dependency. The latency viewer page imports the daemon's stamp.js, which is served beside it (bench/README.md).",
      severity: 'error',
      from: { pathNot: '^bench/latency/viewer\\.js$' },
      to: { couldNotResolve: true },
    },

    // The composition root and the process shells: nothing imports main, app or cli.
    {
      name: 'nothing-imports-cli',
      comment: 'cli.ts is the `outpost` command: an entry point, never a library.',
      severity: 'error',
      from: {},
      to: { path: '^daemon/src/cli\\.ts$' },
    },
    {
      name: 'only-cli-imports-main',
      comment: 'main.ts is the daemon process shell; only the `outpost run` command (cli.ts) starts it.',
      severity: 'error',
      from: { pathNot: '^daemon/src/cli\\.ts$' },
      to: { path: '^daemon/src/main\\.ts$' },
    },
    {
      name: 'only-main-imports-app',
      comment:
        'app.ts is the composition root: main.ts runs it (tests and benchmarks drive it too); no room reaches back into it.',
      severity: 'error',
      from: { path: '^(daemon|provisioning|console)/', pathNot: '^daemon/src/main\\.ts$' },
      to: { path: '^daemon/src/app\\.ts$' },
    },
    {
      name: 'worker-entries-are-not-imported',
      comment:
        'camera/worker.ts and gst/job-worker.ts are child-process entry points, forked by path (gst/fork.ts).',
      severity: 'error',
      from: {},
      to: { path: '^daemon/src/(camera/worker|gst/job-worker)\\.ts$' },
    },
    {
      name: 'only-main-notifies-systemd',
      comment:
        'Only main.ts touches process-wide state: signals, exit status and sd_notify (lifecycle/sdnotify.ts).',
      severity: 'error',
      from: { pathNot: '^daemon/src/main\\.ts$' },
      to: { path: '^daemon/src/lifecycle/sdnotify\\.ts$' },
    },

    // One importer per native or heavy library.
    onlyImporter(
      'one-importer-child-process',
      { core: 'child_process' },
      ['gst/fork.ts', 'gpio/gpiod-pin.ts', 'camera/janus-process.ts'],
      'Processes are started in gst/fork.ts (GStreamer workers, the device monitor); gpiod-pin.ts runs the gpiod tools; camera/janus-process.ts runs the development Janus (sfu.janus.launch).',
    ),
    onlyImporter(
      'one-importer-onoff',
      { npm: 'onoff' },
      ['gpio/onoff-pin.ts'],
      'onoff (native epoll) loads only where the sysfs GPIO backend is used.',
    ),
    onlyImporter(
      'one-importer-systeminformation',
      { npm: 'systeminformation' },
      ['telemetry/sampler.ts'],
      'systeminformation is read by the telemetry sampler alone.',
    ),
    onlyImporter(
      'one-importer-aedes',
      { npm: 'aedes' },
      ['mqtt/broker.ts'],
      'The broker core is embedded in one module; policies are hooks it is given.',
    ),
    onlyImporter(
      'one-importer-prom-client',
      { npm: 'prom-client' },
      ['metrics/metrics.ts'],
      'Prometheus metrics are defined and served by metrics/metrics.ts; the rooms are read through narrow interfaces.',
    ),
    onlyImporter(
      'one-importer-unix-dgram',
      { npm: 'unix-dgram' },
      ['lifecycle/sdnotify.ts'],
      'The sd_notify socket is written by sdnotify.ts alone.',
    ),
    {
      name: 'one-importer-gstreamer-superficial',
      comment:
        'gstreamer-superficial leaks ~1.7 MB per Pipeline and holds a libuv thread per pollBus: gst/native.ts loads it, in worker processes only.',
      severity: 'error',
      from: daemonExcept('gst/native.ts'),
      to: { path: '(^|/)node_modules/gstreamer-superficial/' },
    },
    {
      name: 'gstreamer-only-in-workers',
      comment:
        "The daemon's main process never loads GStreamer: only the worker entries import gst/native.ts.",
      severity: 'error',
      from: daemonExcept('camera/worker.ts', 'gst/job-worker.ts'),
      to: { path: '^daemon/src/gst/native\\.ts$' },
    },
    {
      name: 'mqtt-clients-in-mqtt',
      comment:
        "Subsystems publish through the uplink (mqtt/publisher.ts), never an MQTT client of their own; clips/receiver-link.ts is the link of the clip receiver (outpost clips pull, and the hub's clip archive for the console); bridge/bridge.ts is itself an MQTT link (the site broker ↔ the central broker).",
      severity: 'error',
      from: {
        path: '^daemon/src/',
        pathNot: '^daemon/src/(mqtt/|clips/receiver-link\\.ts$|bridge/bridge\\.ts$)',
      },
      to: { path: '(^|/)node_modules/mqtt/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'broker-only-in-the-daemon',
      comment:
        'mqtt/broker.ts brings Aedes, LevelDB and ws: the composition root builds it; command-line tools reach the daemon over MQTT (mqtt/tool-client.ts).',
      severity: 'error',
      from: { path: '^daemon/src/', pathNot: '^daemon/src/(app\\.ts|mqtt/)' },
      to: { path: '^daemon/src/mqtt/broker\\.ts$', dependencyTypesNot: ['type-only'] },
    },

    // Rooms.
    {
      name: 'gst-knows-only-gstreamer',
      comment:
        'gst/ describes and runs pipelines; camera/ and clips/ build on it, never the other way. Like every room it may use errors.ts and lifecycle/ (its workers are started tied to the daemon: lifecycle/tied-child.ts).',
      severity: 'error',
      from: { path: '^daemon/src/gst/' },
      to: { path: '^daemon/src/', pathNot: '^daemon/src/(gst/|lifecycle/|errors\\.ts$)' },
    },
    {
      name: 'clips-know-camera-by-type',
      comment:
        "clips/ gets a camera's video through the PreRollHook a camera is given (a type), not by reaching into camera/.",
      severity: 'error',
      from: { path: '^daemon/src/clips/' },
      to: { path: '^daemon/src/camera/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'console-shares-only-the-contract',
      comment:
        "The web console never imports daemon code; it shares the topic contract's types (mqtt/contract.ts, mqtt/topics.ts).",
      severity: 'error',
      from: { path: '^console/' },
      to: { path: '^(daemon|provisioning)/', pathNot: '^daemon/src/mqtt/(contract|topics)\\.ts$' },
    },
    {
      name: 'shipped-code-not-to-tests-or-benchmarks',
      comment: 'What ships (daemon, provisioning, console) never imports tests or benchmarks.',
      severity: 'error',
      from: { path: '^(daemon|provisioning|console)/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'daemon-not-to-provisioning',
      comment:
        "The daemon is the box; provisioning is the tech's laptop tool that uses the daemon's config schema, not the reverse.",
      severity: 'error',
      from: { path: '^daemon/' },
      to: { path: '^provisioning/' },
    },
    {
      name: 'shipped-code-not-to-dev-dependencies',
      comment: 'devDependencies are not installed on the box.',
      severity: 'error',
      from: { path: '^(daemon|provisioning)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    exclude: { path: '^dist/' },
    // The suite's fixture trees link this repository's node_modules: keep its paths as they are.
    preserveSymlinks: true,
    doNotFollow: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.tsx', '.js', '.d.ts', '.json', '.node'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
