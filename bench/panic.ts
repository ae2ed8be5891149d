// bench:panic — press → alert at a console subscriber, over 50 fake presses, through the whole daemon
// (app.ts with its broker, uplink, panic service and button, the button on a fake pin) while two test
// cameras stream. The press time is the first edge of the press; the figure includes the button's
// debounce (gpio.button.debounceMs, 20 ms), because the daemon cannot know it is a press before that.
// Also press → verified clip at a console receiver (`outpost clips pull`, its own process): the clip is
// cut from the cameras' pre-roll (clips/preroll.ts, clips/mux.ts), so it is ready the post-roll plus up
// to one keyframe interval (a GOP's file is closed when the next keyframe reaches the file sink) plus the
// mux after the press. And the pre-roll's memory: bytes and files in each camera's ring once it has run for more than
// twice the pre-roll (steady state), and the most seen while clips pin segments during the presses.
// Prints a table, and as its last line one JSON object of the figures.
//
//   npm run bench:panic -- [--presses 50] [--gap-ms 400] [--pre-roll 2] [--post-roll 1] [--size 640x360]
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import { buildApp } from '../daemon/src/app.js';
import { configSchema } from '../daemon/src/config/schema.js';
import { FakePin } from '../daemon/src/gpio/fake-pin.js';
import { LOCAL_ADMIN, localAdminFile } from '../daemon/src/mqtt/local-admin.js';
import { alertPayload } from '../daemon/src/mqtt/contract.js';
import { topics } from '../daemon/src/mqtt/topics.js';
import { freePort } from './proc.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) || fallback : fallback;
};
const presses = arg('--presses', 50);
const gapMs = arg('--gap-ms', 400);
const preRollSeconds = arg('--pre-roll', 2);
const postRollSeconds = arg('--post-roll', 1);
// 640x360 by default so two x264 encoders leave the 2-core machine room; `--size 1280x720` for the
// issue's 720p figure (the ring's bytes follow the bitrate, 2 Mbit/s either way).
const [cameraWidth, cameraHeight] = (() => {
  const at = process.argv.indexOf('--size');
  const match = at >= 0 ? /^(\d+)x(\d+)$/.exec(process.argv[at + 1] ?? '') : null;
  return match ? [Number(match[1]), Number(match[2])] : [640, 360];
})();

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const port = await freePort();
const dataDir = await mkdtemp(join(tmpdir(), 'outpost-bench-panic-'));
// The pre-roll on a tmpfs, as on the box (/run/outpost): /dev/shm where there is one.
const preRollDir = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/outpost-bench-preroll-') : undefined;
const config = configSchema.parse({
  site: 'bench',
  device: 'bench',
  dataDir,
  log: { level: 'warn' },
  broker: { tcp: { port } },
  gpio: { button: { pin: 17 } },
  clips: { preRollSeconds, postRollSeconds, ...(preRollDir === undefined ? {} : { preRollDir }) },
  cameras: [0, 1].map((i) => ({
    name: `cam${i}`,
    width: cameraWidth,
    height: cameraHeight,
    framerate: 30,
    encoder: 'x264enc',
    rtp: { port: 26_004 + 2 * i },
  })),
});
const pin = new FakePin({ level: 1, description: 'bench fake pin' });
const app = buildApp(config, pino({ level: 'warn' }), { openPin: () => Promise.resolve(pin) });
await app.start();

const password = (await readFile(localAdminFile(dataDir), 'utf8')).trim();
const console1 = await connectAsync(`mqtt://127.0.0.1:${port}`, {
  username: LOCAL_ADMIN,
  password,
  clientId: `${LOCAL_ADMIN}.bench`,
});
const alertAt = new Map<string, number>();
console1.on('message', (_topic, payload) => {
  const alert = alertPayload.parse(JSON.parse(payload.toString('utf8')));
  if (alert.clipId) alertAt.set(alert.clipId, Date.now());
});
await console1.subscribeAsync(topics.alert(config.site, config.device), { qos: 1 });

const out = await mkdtemp(join(tmpdir(), 'outpost-bench-clips-'));
const clipAt = new Map<string, number>();
// The clip receiver runs in its own process, as a console would: its hashing and file writes stay out
// of the daemon's event loop. A clip counts when its "sha256 verified" line arrives here.
const receiver = spawn(
  process.execPath,
  [
    fileURLToPath(new URL('../daemon/src/cli.js', import.meta.url)),
    'clips', 'pull', '--out', out, '--url', `mqtt://127.0.0.1:${port}`, '--site', config.site,
    '--username', 'local-admin', '--password-file', localAdminFile(dataDir),
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
); // prettier-ignore
let partial = '';
receiver.stdout.on('data', (chunk: Buffer) => {
  partial += chunk.toString();
  const lines = partial.split('\n');
  partial = lines.pop() ?? '';
  for (const line of lines) {
    const done = /^clip bench\/(\S+): .*sha256 verified/.exec(line);
    if (done?.[1]) clipAt.set(done[1], Date.now());
  }
});
// Cameras streaming and their pre-roll in steady state (more than twice the pre-roll), receiver subscribed.
await sleep(2 * preRollSeconds * 1000 + 3000);
const steadyPreRoll = app.preroll.usage();
const mostPreRoll = new Map(steadyPreRoll.map((u) => [u.camera, { ...u }]));
const sampler = setInterval(() => {
  for (const u of app.preroll.usage()) {
    const most = mostPreRoll.get(u.camera);
    if (most && u.bytes > most.bytes) mostPreRoll.set(u.camera, { ...u });
  }
}, 250);

const pressedAt: Array<{ at: number; clipId?: string }> = [];
for (let i = 0; i < presses; i += 1) {
  const at = Date.now();
  // A real contact bounces: three quick edges, then held.
  pin.set(0);
  pin.set(1);
  pin.set(0);
  pressedAt.push({ at });
  const before = new Set(alertAt.keys());
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline && alertAt.size === before.size) await sleep(1);
  const clipId = [...alertAt.keys()].find((id) => !before.has(id));
  if (clipId) {
    const entry = pressedAt.at(-1);
    if (entry) entry.clipId = clipId;
  }
  await sleep(100);
  pin.set(1);
  await sleep(gapMs);
}
const waitUntil = Date.now() + 60_000;
while (Date.now() < waitUntil && pressedAt.some((p) => p.clipId && !clipAt.has(p.clipId))) await sleep(100);
clearInterval(sampler);
receiver.kill('SIGINT');
await new Promise((resolve) => receiver.once('exit', resolve));
await console1.endAsync();
await app.stop();
if (preRollDir !== undefined) await rm(preRollDir, { recursive: true, force: true });

const toAlert = pressedAt.flatMap((p) => (p.clipId ? [(alertAt.get(p.clipId) ?? NaN) - p.at] : []));
const toClip = pressedAt.flatMap((p) =>
  p.clipId && clipAt.has(p.clipId) ? [(clipAt.get(p.clipId) ?? 0) - p.at] : [],
);
const figures = {
  bench: 'panic',
  presses,
  alerts: toAlert.length,
  pressToAlertMs: { p50: percentile(toAlert, 50), p95: percentile(toAlert, 95), max: Math.max(...toAlert) },
  debounceMs: config.gpio?.button?.debounceMs,
  clipsVerified: toClip.length,
  pressToVerifiedClipMs: { p50: percentile(toClip, 50), p95: percentile(toClip, 95) },
  clipSource: 'camera pre-roll + post-roll, muxed without re-encoding',
  preRollMs: preRollSeconds * 1000,
  postRollMs: postRollSeconds * 1000,
  cameras: config.cameras.length,
  camera: `${config.cameras[0]?.width}x${config.cameras[0]?.height}@${config.cameras[0]?.framerate} ${config.cameras[0]?.bitrateKbps} kbit/s, keyframe every ${config.cameras[0]?.keyframeIntervalSeconds} s`,
  preRollSteady: steadyPreRoll,
  preRollMostDuringPresses: [...mostPreRoll.values()],
};
console.log(`presses ${presses}, alerts at the console ${toAlert.length}`);
console.log(
  `press → alert (incl. ${figures.debounceMs} ms debounce): p50 ${figures.pressToAlertMs.p50} ms, p95 ${figures.pressToAlertMs.p95} ms, max ${figures.pressToAlertMs.max} ms`,
);
console.log(
  `press → verified clip (${figures.preRollMs} ms pre-roll + ${figures.postRollMs} ms post-roll): p50 ${figures.pressToVerifiedClipMs.p50} ms, p95 ${figures.pressToVerifiedClipMs.p95} ms (${toClip.length} clips)`,
);
for (const steady of steadyPreRoll) {
  const most = mostPreRoll.get(steady.camera);
  console.log(
    `pre-roll ${steady.camera} (${figures.camera}): steady ${Math.round(steady.bytes / 1024)} KiB in ${steady.files} segments; most during the presses ${Math.round((most?.bytes ?? 0) / 1024)} KiB in ${most?.files} (clips pin what they need)`,
  );
}
console.log(JSON.stringify(figures));
process.exit(0);
