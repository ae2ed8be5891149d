// bench:pipeline — what the daemon costs beside a bare gst-launch-1.0 running the identical pipelines.
// For one and for two 720p30 test cameras: CPU (user+system ticks of the whole process tree, from
// /proc) and RSS (sum over the tree, sampled each second) over a fixed window, daemon vs bare, in one
// run. Then the x264 encoder's own latency from GStreamer's latency tracer on the bare pipeline.
// Prints a table, and as its last line one JSON object of the figures.
//
//   npm run bench:pipeline -- [--seconds 60]
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cameraChain, renderPipeline } from '../daemon/src/camera/pipeline.js';
import { configSchema, type Config } from '../daemon/src/config/schema.js';
import { cpuTicks, freePort, processTree as tree, unitEnvironment } from './proc.js';

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 60;
const CLI = fileURLToPath(new URL('../daemon/src/cli.js', import.meta.url));
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function configWith(cameras: number, brokerPort: number): Config {
  return configSchema.parse({
    site: 'bench',
    device: 'bench',
    log: { level: 'warn' },
    broker: { tcp: { port: brokerPort } },
    cameras: Array.from({ length: cameras }, (_, i) => ({
      name: `cam${i}`,
      width: 1280,
      height: 720,
      framerate: 30,
      bitrateKbps: 2000,
      encoder: 'x264enc',
      rtp: { port: 25_004 + 2 * i },
    })),
  });
}

function rssKb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

interface Sample {
  cpuPercent: number;
  rssMb: number;
  rssMaxMb: number;
}

/** Measure the process trees under `roots` for `seconds`, after a warm-up. */
async function measure(roots: number[]): Promise<Sample> {
  await sleep(5000); // warm-up: encoder start, first keyframes
  const pids = () => roots.flatMap(tree);
  const ticks = () => pids().reduce((sum, pid) => sum + cpuTicks(pid), 0);
  const startTicks = ticks();
  const began = Date.now();
  const rss: number[] = [];
  while (Date.now() - began < seconds * 1000) {
    await sleep(1000);
    rss.push(pids().reduce((sum, pid) => sum + rssKb(pid), 0) / 1024);
  }
  const elapsed = (Date.now() - began) / 1000;
  return {
    cpuPercent: ((ticks() - startTicks) / TICKS_PER_SECOND / elapsed) * 100,
    rssMb: rss.reduce((a, b) => a + b, 0) / rss.length,
    rssMaxMb: Math.max(...rss),
  };
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGINT');
          setTimeout(() => child.kill('SIGKILL'), 5000).unref();
        }),
    ),
  );
}

async function daemonRun(cameras: number): Promise<Sample> {
  const file = join(tmpdir(), `outpost-bench-${process.pid}.yaml`);
  const config = configWith(cameras, await freePort());
  await writeFile(file, JSON.stringify(config)); // JSON is YAML
  // The daemon runs with the environment its systemd unit gives it (malloc and V8 settings).
  const daemon = spawn(process.execPath, [CLI, 'run', '--config', file], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, ...unitEnvironment() },
  });
  try {
    return await measure([daemon.pid!]);
  } finally {
    await stopAll([daemon]);
  }
}

/**
 * The daemon's own pipelines, pre-roll branch included when `preRollDir` is given (the daemon runs
 * with the default pre-roll: tee → leaky queue → mpegtsmux → multifilesink, a file per GOP).
 */
function descriptions(cameras: number, preRollDir?: string): string[] {
  const config = configWith(cameras, 1883);
  return config.cameras.map((camera) =>
    renderPipeline(
      cameraChain(
        camera,
        config.sfu,
        'x264enc',
        undefined,
        preRollDir === undefined
          ? undefined
          : {
              location: join(preRollDir, `${camera.name}-%08d.ts`),
              segmentSeconds: camera.keyframeIntervalSeconds,
            },
      ),
    ),
  );
}

/** gst-launch-1.0 re-quotes each argument, so hand it the description's own tokens. */
function gstArgs(description: string): string[] {
  return description.split(' ').map((token) => token.replace(/"/g, ''));
}

async function bareRun(cameras: number): Promise<Sample> {
  // The same pre-roll branch as the daemon's, into a folder of its own (not pruned: 60 s is ~15 MB).
  const preRollDir = await mkdtemp(join(tmpdir(), 'outpost-bench-preroll-'));
  const children = descriptions(cameras, preRollDir).map((description) =>
    spawn('gst-launch-1.0', ['-q', ...gstArgs(description)], { stdio: ['ignore', 'ignore', 'inherit'] }),
  );
  try {
    return await measure(children.map((child) => child.pid!));
  } finally {
    await stopAll(children);
    await rm(preRollDir, { recursive: true, force: true });
  }
}

/** x264enc's own latency (ms) from the latency tracer: p50/p95 over a few seconds. */
async function encoderLatency(): Promise<{ p50: number; p95: number; frames: number }> {
  const description = descriptions(1)[0]!;
  const child = spawn('gst-launch-1.0', ['-q', ...gstArgs(description)], {
    env: {
      ...process.env,
      GST_TRACERS: 'latency(flags=element)',
      GST_DEBUG: 'GST_TRACER:7',
      GST_DEBUG_NO_COLOR: '1',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
  await sleep(Math.min(10, seconds) * 1000);
  await stopAll([child]);
  const values = [...log.matchAll(/element-latency.*element=\(string\)x264enc\d*.*time=\(guint64\)(\d+)/g)]
    .map((m) => Number(m[1]) / 1e6)
    .sort((a, b) => a - b);
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))] ?? Number.NaN;
  return { p50: round(at(0.5)), p95: round(at(0.95)), frames: values.length };
}

function round(value: number, digits = 2): number {
  return Number(value.toFixed(digits));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const figures: Record<string, number> = { seconds };
for (const cameras of [1, 2]) {
  console.log(
    `${cameras} camera(s), 720p30 x264 2 Mbit/s, ${seconds} s each: bare gst-launch-1.0, then the daemon`,
  );
  const bare = await bareRun(cameras);
  const daemon = await daemonRun(cameras);
  console.log(
    `  bare:   CPU ${bare.cpuPercent.toFixed(1)} %  RSS ${bare.rssMb.toFixed(1)} MB (max ${bare.rssMaxMb.toFixed(1)})`,
  );
  console.log(
    `  daemon: CPU ${daemon.cpuPercent.toFixed(1)} %  RSS ${daemon.rssMb.toFixed(1)} MB (max ${daemon.rssMaxMb.toFixed(1)})`,
  );
  console.log(`  ratio:  CPU ${(daemon.cpuPercent / bare.cpuPercent).toFixed(3)}x (target <= 1.10)`);
  figures[`cam${cameras}_bare_cpu_pct`] = round(bare.cpuPercent, 1);
  figures[`cam${cameras}_daemon_cpu_pct`] = round(daemon.cpuPercent, 1);
  figures[`cam${cameras}_cpu_ratio`] = round(daemon.cpuPercent / bare.cpuPercent, 3);
  figures[`cam${cameras}_bare_rss_mb`] = round(bare.rssMb, 1);
  figures[`cam${cameras}_daemon_rss_mb`] = round(daemon.rssMb, 1);
  figures[`cam${cameras}_daemon_rss_max_mb`] = round(daemon.rssMaxMb, 1);
}
const latency = await encoderLatency();
console.log(
  `x264enc latency (GStreamer latency tracer): p50 ${latency.p50} ms, p95 ${latency.p95} ms over ${latency.frames} frames`,
);
figures.x264_latency_p50_ms = latency.p50;
figures.x264_latency_p95_ms = latency.p95;
console.log(JSON.stringify(figures));
