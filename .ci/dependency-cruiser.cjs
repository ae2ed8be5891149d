// The dependency rules of docs/architecture.md ("Dependency rules"), as a dependency-cruiser rule set
// that `npm test` runs (`npm run deps`) over the whole tree. Each rule says what it keeps and why;
// test/deps/rules.test.ts shows that each one fails on the import it forbids.
//
// Paths are relative to the repository root. `type-only` imports (`import type`) vanish from the
// built JavaScript, so the one-importer rules allow them; the cycle rule counts them too, because a
// type cycle is still two modules that cannot be read one without the other.

/** A forbidden dependency: `from` modules must not import `to` modules. */
const rule = (name, comment, from, to) => ({ name, comment, severity: 'error', from, to });

/** A module of the daemon other than `files` (paths under daemon/src/). */
const daemonExcept = (...files) => ({
  path: '^daemon/src/',
  pathNot: `^daemon/src/(${files.map((file) => file.replace(/[.]/g, '\\.')).join('|')})$`,
});

/** The one file of daemon/src allowed to load `module` (an npm package or a Node built-in). */
const onlyImporter = (name, module, files, comment) =>
  rule(name, comment, daemonExcept(...files), {
    path: module.core ? `^${module.core}$` : `(^|/)node_modules/${module.npm}/`,
    ...(module.core ? { dependencyTypes: ['core'] } : {}),
    dependencyTypesNot: ['type-only'],
  });

module.exports = {
  forbidden: [
    rule(
      'no-circular',
      'No import cycles anywhere: each module can be read, tested and moved without its importers.',
      {},
      { circular: true },
    ),
    rule(
      'not-to-unresolvable',
      "An import that resolves to nothing is a typo or a missing dependency. The latency viewer page imports the daemon's stamp.js, which is served beside it (bench/README.md).",
      { pathNot: '^bench/latency/viewer\\.js$' },
      { couldNotResolve: true },
    ),

    // The composition root and the process shells: nothing imports main, app or cli.
    rule(
      'nothing-imports-cli',
      'cli.ts is the `outpost` command: an entry point, never a library.',
      {},
      { path: '^daemon/src/cli\\.ts$' },
    ),
    rule(
      'only-cli-imports-main',
      'main.ts is the daemon process shell; only the `outpost run` command (cli.ts) starts it.',
      { pathNot: '^daemon/src/cli\\.ts$' },
      { path: '^daemon/src/main\\.ts$' },
    ),
    rule(
      'only-main-imports-app',
      'app.ts is the composition root: main.ts runs it (tests and benchmarks drive it too); no room reaches back into it.',
      { path: '^(daemon|provisioning|console)/', pathNot: '^daemon/src/main\\.ts$' },
      { path: '^daemon/src/app\\.ts$' },
    ),
    rule(
      'worker-entries-are-not-imported',
      'camera/worker.ts and gst/job-worker.ts are child-process entry points, forked by path (gst/fork.ts).',
      {},
      { path: '^daemon/src/(camera/worker|gst/job-worker)\\.ts$' },
    ),
    rule(
      'only-main-notifies-systemd',
      'Only main.ts touches process-wide state: signals, exit status and sd_notify (lifecycle/sdnotify.ts).',
      { pathNot: '^daemon/src/main\\.ts$' },
      { path: '^daemon/src/lifecycle/sdnotify\\.ts$' },
    ),

    // One importer per native or heavy library.
    onlyImporter(
      'one-importer-child-process',
      { core: 'child_process' },
      ['gst/fork.ts', 'gpio/gpiod-pin.ts', 'camera/janus-process.ts', 'update/run.ts'],
      'Processes are started in gst/fork.ts (GStreamer workers, the device monitor); gpiod-pin.ts runs the gpiod tools; camera/janus-process.ts runs the development Janus (sfu.janus.launch); update/run.ts runs rauc, systemctl, mount and the boot backend.',
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
      ['mqtt/broker/aedes.ts'],
      "The broker core is embedded in one module, with every reach into Aedes's private state (an Aedes upgrade fails there first); policies are hooks it is given.",
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
    rule(
      'one-importer-gstreamer-superficial',
      'gstreamer-superficial leaks ~1.7 MB per Pipeline and holds a libuv thread per pollBus: gst/native.ts loads it, in worker processes only.',
      daemonExcept('gst/native.ts'),
      { path: '(^|/)node_modules/gstreamer-superficial/' },
    ),
    rule(
      'gstreamer-only-in-workers',
      "The daemon's main process never loads GStreamer: only the worker entries import gst/native.ts.",
      daemonExcept('camera/worker.ts', 'gst/job-worker.ts'),
      { path: '^daemon/src/gst/native\\.ts$' },
    ),
    rule(
      'mqtt-clients-in-mqtt',
      "Subsystems publish through the uplink (mqtt/publisher.ts), never an MQTT client of their own; clips/receiver-link.ts is the link of the clip receiver (outpost clips pull, and the hub's clip archive for the console); bridge/bridge.ts is itself an MQTT link (the site broker ↔ the central broker); console/central-broker.ts checks a centre console login with an MQTT CONNECT to the central broker.",
      {
        path: '^daemon/src/',
        pathNot:
          '^daemon/src/(mqtt/|clips/receiver-link\\.ts$|bridge/bridge\\.ts$|console/central-broker\\.ts$)',
      },
      { path: '(^|/)node_modules/mqtt/', dependencyTypesNot: ['type-only'] },
    ),
    rule(
      'broker-only-in-the-daemon',
      'mqtt/broker.ts and its rooms (mqtt/broker/) bring Aedes, LevelDB and ws: the composition root builds the broker; command-line tools reach the daemon over MQTT (mqtt/tool-client.ts).',
      { path: '^daemon/src/', pathNot: '^daemon/src/(app\\.ts|mqtt/)' },
      { path: '^daemon/src/mqtt/broker(\\.ts$|/)', dependencyTypesNot: ['type-only'] },
    ),

    // Rooms.
    rule(
      'gst-knows-only-gstreamer',
      'gst/ describes and runs pipelines; camera/ and clips/ build on it, never the other way. Like every room it may use errors.ts and lifecycle/ (its workers are started tied to the daemon: lifecycle/tied-child.ts).',
      { path: '^daemon/src/gst/' },
      { path: '^daemon/src/', pathNot: '^daemon/src/(gst/|lifecycle/|errors\\.ts$)' },
    ),
    rule(
      'clips-know-camera-by-type',
      "clips/ gets a camera's video through the PreRollHook a camera is given (a type), not by reaching into camera/.",
      { path: '^daemon/src/clips/' },
      { path: '^daemon/src/camera/', dependencyTypesNot: ['type-only'] },
    ),
    rule(
      'console-shares-only-the-contract',
      "The web console never imports daemon code; it shares the topic contract's types (mqtt/contract.ts, mqtt/topics.ts).",
      { path: '^console/' },
      { path: '^(daemon|provisioning)/', pathNot: '^daemon/src/mqtt/(contract|topics)\\.ts$' },
    ),
    rule(
      'shipped-code-not-to-tests-or-benchmarks',
      'What ships (daemon, provisioning, console) never imports tests or benchmarks.',
      { path: '^(daemon|provisioning|console)/' },
      { path: '^(test|bench)/' },
    ),
    rule(
      'daemon-not-to-provisioning',
      "The daemon is the box; provisioning is the tech's laptop tool that uses the daemon's config schema, not the reverse.",
      { path: '^daemon/' },
      { path: '^provisioning/' },
    ),
    rule(
      'shipped-code-not-to-dev-dependencies',
      'devDependencies are not installed on the box.',
      { path: '^(daemon|provisioning)/' },
      { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    ),
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
