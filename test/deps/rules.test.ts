// The dependency rules (.ci/dependency-cruiser.cjs, run by `npm run lint`) have teeth: in a small tree
// laid out like this repository, each forbidden import is reported under its rule, and the imports the
// rules allow (main → app, the worker entries → gst/native.ts, a type from camera/ in clips/…) are not.
import { spawnSync } from 'node:child_process';
import { mkdir, symlink, writeFile, copyFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, tempDir } from '../support/processes.js';

const CONFIG = join(REPO, '.ci/dependency-cruiser.cjs');
const rules = (createRequire(import.meta.url)(CONFIG) as { forbidden: { name: string }[] }).forbidden;

/** Files of the fixture tree: path → source. Every import here is either allowed or named in FORBIDDEN. */
const TREE: Record<string, string> = {
  // Allowed: the process shells and the composition root.
  'daemon/src/cli.ts': "import { run } from './main.js';\nrun();\n",
  'daemon/src/main.ts':
    "import { app } from './app.js';\nimport { notify } from './lifecycle/sdnotify.js';\nexport const run = () => notify(app);\n",
  'daemon/src/app.ts':
    "import { Broker } from './mqtt/broker.js';\nimport { Camera } from './camera/camera.js';\nexport const app = [Broker, Camera];\n",
  'daemon/src/errors.ts': 'export class OutpostError extends Error {}\n',
  'daemon/src/lifecycle/sdnotify.ts':
    "import 'unix-dgram';\nexport const notify = (what: unknown) => what;\n",
  'daemon/src/mqtt/broker.ts': "import 'aedes';\nimport 'mqtt';\nexport class Broker {}\n",
  'daemon/src/mqtt/contract.ts': 'export type Alert = { id: string };\n',
  'daemon/src/telemetry/sampler.ts': "import 'systeminformation';\n",
  'daemon/src/gpio/onoff-pin.ts': "export const load = () => import('onoff');\n",
  'daemon/src/gpio/gpiod-pin.ts': "import 'node:child_process';\n",
  // gst/: knows only itself and errors.ts; the one child_process importer; the one GStreamer loader.
  'daemon/src/gst/describe.ts':
    "import { OutpostError } from '../errors.js';\nexport const bad = new OutpostError();\n",
  'daemon/src/gst/fork.ts': "import { fork } from 'node:child_process';\nexport const start = fork;\n",
  'daemon/src/gst/native.ts':
    "import { createRequire } from 'node:module';\nimport type { Pipeline } from 'gstreamer-superficial';\nexport type { Pipeline };\nexport const gst: unknown = createRequire(import.meta.url)('gstreamer-superficial');\n",
  'daemon/src/gst/job-worker.ts': "import { gst } from './native.js';\nexport const job = gst;\n",
  'daemon/src/camera/worker.ts': "import { gst } from '../gst/native.js';\nexport const camera = gst;\n",
  'daemon/src/camera/camera.ts':
    "import type { ChildProcess } from 'node:child_process';\nimport { start } from '../gst/fork.js';\nexport type PreRollHook = { child: ChildProcess };\nexport class Camera { start = start; }\n",
  // Allowed: clips know a camera by type, and build on gst/.
  'daemon/src/clips/preroll.ts':
    "import type { PreRollHook } from '../camera/camera.js';\nimport { bad } from '../gst/describe.js';\nexport const hook: PreRollHook | typeof bad = bad;\n",
  'daemon/src/clips/receiver-link.ts': "import 'mqtt';\n",
  'daemon/src/bridge/bridge.ts': "import 'mqtt';\n",
  'daemon/src/metrics/metrics.ts': "import 'prom-client';\n",
  'provisioning/src/bundle.ts':
    "import { bad } from '../../daemon/src/gst/describe.js';\nexport const b = bad;\n",
  'test/support/helper.ts':
    "import { app } from '../../daemon/src/app.js';\nimport 'vitest';\nexport const a = app;\n",
  'console/src/page.ts':
    "import type { Alert } from '../../daemon/src/mqtt/contract.js';\nexport type A = Alert;\n",

  // Forbidden, one file per rule (FORBIDDEN below says which).
  'daemon/src/camera/cycle-a.ts': "import { b } from './cycle-b.js';\nexport const a = () => b;\n",
  'daemon/src/camera/cycle-b.ts':
    "import type { a } from './cycle-a.js';\nexport const b = 1 as unknown as typeof a;\n",
  'daemon/src/chat/typo.ts': "import './no-such-file.js';\n",
  'daemon/src/chat/runs-cli.ts': "import '../cli.js';\n",
  'daemon/src/chat/runs-main.ts': "import { run } from '../main.js';\nrun();\n",
  'daemon/src/clips/reaches-app.ts': "import { app } from '../app.js';\nexport const a = app;\n",
  'daemon/src/chat/imports-worker.ts': "import '../camera/worker.js';\n",
  'daemon/src/telemetry/notifies.ts': "import { notify } from '../lifecycle/sdnotify.js';\nnotify(1);\n",
  'daemon/src/clips/spawns.ts': "import { spawn } from 'node:child_process';\nexport const s = spawn;\n",
  'daemon/src/gpio/button.ts': "import 'onoff';\n",
  'daemon/src/camera/load.ts': "import si from 'systeminformation';\nexport const s = si;\n",
  'daemon/src/mqtt/acl.ts': "import { Aedes } from 'aedes';\nexport const a = Aedes;\n",
  'daemon/src/lifecycle/service.ts': "import 'unix-dgram';\n",
  'daemon/src/camera/scrapes.ts': "import { Gauge } from 'prom-client';\nexport const g = Gauge;\n",
  'daemon/src/camera/pipeline.ts':
    "import type { Pipeline } from 'gstreamer-superficial';\nexport type P = Pipeline;\n",
  'daemon/src/camera/encoders.ts': "import { gst } from '../gst/native.js';\nexport const e = gst;\n",
  'daemon/src/telemetry/own-client.ts': "import { connect } from 'mqtt';\nexport const c = connect;\n",
  'daemon/src/chat/tool.ts': "import { Broker } from '../mqtt/broker.js';\nexport const b = Broker;\n",
  'daemon/src/gst/knows-camera.ts':
    "import { Camera } from '../camera/camera.js';\nexport const c = Camera;\n",
  'daemon/src/clips/mux.ts': "import { Camera } from '../camera/camera.js';\nexport const c = Camera;\n",
  'console/src/reaches-in.ts': "import { app } from '../../daemon/src/app.js';\nexport const a = app;\n",
  'daemon/src/config/test-helper.ts':
    "import { a } from '../../../test/support/helper.js';\nexport const h = a;\n",
  'daemon/src/config/provisioning.ts':
    "import { b } from '../../../provisioning/src/bundle.js';\nexport const p = b;\n",
  'daemon/src/config/dev.ts': "import { describe } from 'vitest';\nexport const d = describe;\n",
};

/** rule → the files whose imports it must report. */
const FORBIDDEN: Record<string, string[]> = {
  // A cycle is reported once, from its first module (cycle-b.ts is its other end).
  'no-circular': ['daemon/src/camera/cycle-a.ts'],
  'not-to-unresolvable': ['daemon/src/chat/typo.ts'],
  'nothing-imports-cli': ['daemon/src/chat/runs-cli.ts'],
  'only-cli-imports-main': ['daemon/src/chat/runs-main.ts'],
  'only-main-imports-app': ['daemon/src/clips/reaches-app.ts', 'console/src/reaches-in.ts'],
  'worker-entries-are-not-imported': ['daemon/src/chat/imports-worker.ts'],
  'only-main-notifies-systemd': ['daemon/src/telemetry/notifies.ts'],
  'one-importer-child-process': ['daemon/src/clips/spawns.ts'],
  'one-importer-onoff': ['daemon/src/gpio/button.ts'],
  'one-importer-systeminformation': ['daemon/src/camera/load.ts'],
  'one-importer-aedes': ['daemon/src/mqtt/acl.ts'],
  'one-importer-unix-dgram': ['daemon/src/lifecycle/service.ts'],
  'one-importer-prom-client': ['daemon/src/camera/scrapes.ts'],
  'one-importer-gstreamer-superficial': ['daemon/src/camera/pipeline.ts'],
  'gstreamer-only-in-workers': ['daemon/src/camera/encoders.ts'],
  'mqtt-clients-in-mqtt': ['daemon/src/telemetry/own-client.ts'],
  'broker-only-in-the-daemon': ['daemon/src/chat/tool.ts'],
  'gst-knows-only-gstreamer': ['daemon/src/gst/knows-camera.ts'],
  'clips-know-camera-by-type': ['daemon/src/clips/mux.ts'],
  'console-shares-only-the-contract': ['console/src/reaches-in.ts'],
  'shipped-code-not-to-tests-or-benchmarks': ['daemon/src/config/test-helper.ts'],
  'daemon-not-to-provisioning': ['daemon/src/config/provisioning.ts'],
  'shipped-code-not-to-dev-dependencies': ['daemon/src/config/dev.ts'],
};

interface Violation {
  from: string;
  rule: { name: string };
}

/** Lay the tree out in a temp folder (with this repository's node_modules, package.json, tsconfig). */
async function layOut(tree: Record<string, string>): Promise<string> {
  const dir = await tempDir();
  for (const [path, source] of Object.entries(tree)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), source);
  }
  await copyFile(join(REPO, 'package.json'), join(dir, 'package.json'));
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: ['node'] },
      include: ['daemon/src', 'provisioning', 'test', 'console'],
    }),
  );
  await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

/** Run depcruise as `npm run deps` does, in `dir`; `json`: the machine-readable report instead of the text. */
function depcruise(dir: string, json = false) {
  return spawnSync(
    process.execPath,
    [
      join(REPO, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs'),
      '--config',
      CONFIG,
      ...(json ? ['--output-type', 'json'] : []),
      '.',
    ],
    { cwd: dir, encoding: 'utf8', timeout: 60_000 },
  );
}

describe('dependency rules', () => {
  it('every rule reports the import it forbids, and none reports an allowed import; the check then fails', async () => {
    const dir = await layOut(TREE);
    const report = depcruise(dir, true);
    const violations = (JSON.parse(report.stdout) as { summary: { violations: Violation[] } }).summary
      .violations;
    const found: Record<string, string[]> = {};
    for (const violation of violations) (found[violation.rule.name] ??= []).push(violation.from);
    for (const files of Object.values(found)) files.sort();
    const expected = Object.fromEntries(
      Object.entries(FORBIDDEN).map(([rule, files]) => [rule, [...files].sort()]),
    );
    expect(found).toEqual(expected);
    // The text report, as `npm run deps` prints it: it names each rule, and its exit status fails the lint.
    const text = depcruise(dir);
    expect(text.status).not.toBe(0);
    for (const rule of Object.keys(FORBIDDEN)) expect(text.stdout).toContain(`error ${rule}: `);
  });

  it('every rule of the rule set is exercised here', () => {
    expect(rules.map((rule) => rule.name).sort()).toEqual(Object.keys(FORBIDDEN).sort());
  });

  it('a tree with only allowed imports passes', async () => {
    const forbidden = new Set([...Object.values(FORBIDDEN).flat(), 'daemon/src/camera/cycle-b.ts']);
    const dir = await layOut(
      Object.fromEntries(Object.entries(TREE).filter(([path]) => !forbidden.has(path))),
    );
    const text = depcruise(dir);
    expect(text.stdout).toContain('no dependency violations found');
    expect(text.status).toBe(0);
  });
});
