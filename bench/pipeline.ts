// bench:pipeline — what the daemon costs beside a bare gst-launch-1.0 running the identical pipelines.
// For one and for two 720p30 test cameras: CPU (user+system ticks of the whole process tree, from
// /proc) and memory (RSS, PSS and shared-once sums over the tree, and each process's RSS, PSS and
// private pages, sampled each second; bench/README.md says what each means) over a fixed window,
// daemon vs bare, in one run, each side in two halves ordered bare, daemon, daemon, bare. Then the x264 encoder's own latency from GStreamer's latency tracer on the bare pipeline.
// Prints a table, and as its last line one JSON object of the figures.
//
//   npm run bench:pipeline -- [--seconds 60]
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cameraChain } from '../daemon/src/camera/pipeline.js';
import { renderPipeline } from '../daemon/src/gst/describe.js';
import { configSchema, type Config } from '../daemon/src/config/schema.js';
import {
  cpuTicks,
  freePort,
  memoryKb,
  processTree as tree,
  sharedOnceKb,
  unitEnvironment,
  unitNodeFlags,
} from './proc.js';

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

interface ProcessFigures {
  /** `main` or `worker0`, `worker1`… for the daemon; `gst0`, `gst1`… for bare gst-launch-1.0. */
  label: string;
  rssMb: number;
  pssMb: number;
  privateMb: number;
}

interface Sample {
  cpuPercent: number;
  /** Sum of the tree's RSS: a page shared by two processes (node's text, GStreamer's libraries) counts twice. */
  rssMb: number;
  rssMaxMb: number;
  /** Sum of the tree's PSS: a shared page split among every process on the machine that maps it. */
  pssMb: number;
  /** The tree's private pages plus its shared pages counted once within the tree (proc.ts, sharedOnceKb). */
  sharedOnceMb: number;
  /** Each process that lived through most of the window, averaged over the samples it was in. */
  processes: ProcessFigures[];
}

function isWorker(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('worker.js');
  } catch {
    return false;
  }
}

/** Measure the process trees under `roots` for `seconds`, after a warm-up. */
async function measure(roots: number[], kind: 'daemon' | 'bare', window: number): Promise<Sample> {
  await sleep(5000); // warm-up: encoder start, first keyframes
  const pids = () => roots.flatMap(tree);
  const ticks = () => pids().reduce((sum, pid) => sum + cpuTicks(pid), 0);
  const startTicks = ticks();
  const began = Date.now();
  const rss: number[] = [];
  const pss: number[] = [];
  const sharedOnce: number[] = [];
  const perPid = new Map<number, { rss: number; pss: number; private: number; samples: number }>();
  while (Date.now() - began < window * 1000) {
    await sleep(1000);
    const now = pids();
    let rssSum = 0;
    let pssSum = 0;
    for (const pid of now) {
      const memory = memoryKb(pid);
      if (!memory) continue;
      rssSum += memory.rss;
      pssSum += memory.pss;
      const total = perPid.get(pid) ?? { rss: 0, pss: 0, private: 0, samples: 0 };
      perPid.set(pid, {
        rss: total.rss + memory.rss,
        pss: total.pss + memory.pss,
        private: total.private + memory.private,
        samples: total.samples + 1,
      });
    }
    rss.push(rssSum / 1024);
    pss.push(pssSum / 1024);
    sharedOnce.push(sharedOnceKb(now) / 1024);
  }
  const elapsed = (Date.now() - began) / 1000;
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  // A probe worker or a clip's mux lives for a moment; only the processes of the steady state count.
  const steady = [...perPid].filter(([, total]) => total.samples >= rss.length / 2).sort(([a], [b]) => a - b);
  let workers = 0;
  let gsts = 0;
  const processes = steady.flatMap(([pid, total]): ProcessFigures[] => {
    const label =
      kind === 'bare'
        ? `gst${gsts++}`
        : roots.includes(pid)
          ? 'main'
          : isWorker(pid)
            ? `worker${workers++}`
            : undefined;
    if (label === undefined) return [];
    const mb = (kb: number) => kb / total.samples / 1024;
    return [{ label, rssMb: mb(total.rss), pssMb: mb(total.pss), privateMb: mb(total.private) }];
  });
  return {
    cpuPercent: ((ticks() - startTicks) / TICKS_PER_SECOND / elapsed) * 100,
    rssMb: mean(rss),
    rssMaxMb: Math.max(...rss),
    pssMb: mean(pss),
    sharedOnceMb: mean(sharedOnce),
    processes,
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

async function daemonRun(cameras: number, window: number): Promise<Sample> {
  const file = join(tmpdir(), `outpost-bench-${process.pid}.yaml`);
  const config = configWith(cameras, await freePort());
  await writeFile(file, JSON.stringify(config)); // JSON is YAML
  // The daemon runs with the environment its systemd unit gives it (malloc and V8 settings).
  const daemon = spawn(process.execPath, [...unitNodeFlags(), CLI, 'run', '--config', file], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, ...unitEnvironment() },
  });
  try {
    return await measure([daemon.pid!], 'daemon', window);
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

async function bareRun(cameras: number, window: number): Promise<Sample> {
  // The same pre-roll branch as the daemon's, into a folder of its own (not pruned: 60 s is ~15 MB).
  const preRollDir = await mkdtemp(join(tmpdir(), 'outpost-bench-preroll-'));
  const children = descriptions(cameras, preRollDir).map((description) =>
    spawn('gst-launch-1.0', ['-q', ...gstArgs(description)], { stdio: ['ignore', 'ignore', 'inherit'] }),
  );
  try {
    return await measure(
      children.map((child) => child.pid!),
      'bare',
      window,
    );
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

/** Two halves of one side: CPU averaged (each half's kept), memory from the second half, the max of both. */
function bothHalves(first: Sample, second: Sample): Sample & { halves: number[] } {
  return {
    ...second,
    cpuPercent: (first.cpuPercent + second.cpuPercent) / 2,
    rssMaxMb: Math.max(first.rssMaxMb, second.rssMaxMb),
    halves: [first.cpuPercent, second.cpuPercent],
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const figures: Record<string, number> = { seconds };
for (const cameras of [1, 2]) {
  console.log(
    `${cameras} camera(s), 720p30 x264 2 Mbit/s, ${seconds} s each in two halves: bare, daemon, daemon, bare`,
  );
  // ABBA: a drift of the machine over the run (clock, other load) weighs on both sides the same.
  const bareFirst = await bareRun(cameras, seconds / 2);
  const daemonFirst = await daemonRun(cameras, seconds / 2);
  const daemon = bothHalves(daemonFirst, await daemonRun(cameras, seconds / 2));
  const bare = bothHalves(bareFirst, await bareRun(cameras, seconds / 2));
  for (const [name, sample] of [
    ['bare', bare],
    ['daemon', daemon],
  ] as const) {
    console.log(
      `  ${`${name}:`.padEnd(8)}CPU ${sample.cpuPercent.toFixed(1)} % (halves ${sample.halves.map((c) => c.toFixed(1)).join(', ')})  RSS ${sample.rssMb.toFixed(1)} MB (max ${sample.rssMaxMb.toFixed(1)})  PSS ${sample.pssMb.toFixed(1)} MB  shared once ${sample.sharedOnceMb.toFixed(1)} MB`,
    );
    figures[`cam${cameras}_${name}_cpu_pct`] = round(sample.cpuPercent, 1);
    figures[`cam${cameras}_${name}_rss_mb`] = round(sample.rssMb, 1);
    figures[`cam${cameras}_${name}_rss_max_mb`] = round(sample.rssMaxMb, 1);
    figures[`cam${cameras}_${name}_pss_mb`] = round(sample.pssMb, 1);
    figures[`cam${cameras}_${name}_shared_once_mb`] = round(sample.sharedOnceMb, 1);
    for (const member of sample.processes) {
      console.log(
        `          ${member.label.padEnd(8)}RSS ${member.rssMb.toFixed(1)} MB  PSS ${member.pssMb.toFixed(1)} MB  private ${member.privateMb.toFixed(1)} MB`,
      );
      figures[`cam${cameras}_${name}_${member.label}_rss_mb`] = round(member.rssMb, 1);
      figures[`cam${cameras}_${name}_${member.label}_pss_mb`] = round(member.pssMb, 1);
      figures[`cam${cameras}_${name}_${member.label}_private_mb`] = round(member.privateMb, 1);
    }
  }
  console.log(`  ratio:  CPU ${(daemon.cpuPercent / bare.cpuPercent).toFixed(3)}x (target <= 1.10)`);
  figures[`cam${cameras}_cpu_ratio`] = round(daemon.cpuPercent / bare.cpuPercent, 3);
}
const latency = await encoderLatency();
console.log(
  `x264enc latency (GStreamer latency tracer): p50 ${latency.p50} ms, p95 ${latency.p95} ms over ${latency.frames} frames`,
);
figures.x264_latency_p50_ms = latency.p50;
figures.x264_latency_p95_ms = latency.p95;
console.log(JSON.stringify(figures));
