// bench:latency — glass-to-glass latency of the stamped test camera (stamp.ts, stamped-source.ts), on
// one machine and one clock: capture (the stamp is the host clock when the frame is pushed into the
// pipeline) → x264 → RTP → Janus → Chromium's WebRTC jitter buffer and decoder → a decoded frame in
// the page (requestVideoFrameCallback, stamp read from a canvas), and the same RTP into a GStreamer
// receiver (rtpjitterbuffer latency=0, avdec_h264) as the non-browser floor.
//
// Four phases in one run, each over --frames stamped frames after a warm-up:
//   daemon → Janus → browser       the daemon (sfu.mode janus) with a stamped 720p30 2 Mbit/s camera
//   daemon → GStreamer             the daemon (sfu.mode static) sending to the receiver's port
//   bare → Janus → browser         the same pipeline and stamped source without the daemon (bare-sender.ts)
//   bare → GStreamer
// then 10 s of the bare sender with videotestsrc instead of the stamped source: the stamp's CPU cost.
// Prints a table, writes latency.json and latency-cdf.png (drawn by Chromium itself) to --out, and
// ends with one line of JSON.
//
//   npm run bench:latency -- [--frames 1000] [--out bench/latency/last-run] [--no-cost]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { stopChild } from '../../daemon/src/lifecycle/stop-child.js';
import { headlessChromium } from '../../test/support/chromium.js';
import { janusServer, type TestJanus } from '../../test/support/janus.js';
import { freePort, freeUdpPortPair, tempDir } from '../../test/support/processes.js';
import { cpuTicks, processTree } from '../proc.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = join(REPO, 'dist/daemon/src/cli.js');
const HERE = join(REPO, 'dist/bench/latency');
const PAGES = join(REPO, 'bench/latency');
const STAMP_JS = join(REPO, 'dist/daemon/src/camera/stamp.js');

const frames = Number(option('frames')) || 1000;
const outDir = option('out') ?? join(REPO, 'bench/latency/last-run');
/** Frames dropped from the start of each phase: first keyframe, encoder and jitter-buffer warm-up. */
const WARMUP_FRAMES = 30;
const CAMERA = { width: 1280, height: 720, framerate: 30, bitrateKbps: 2000 };
const MOUNTPOINT_ID = 1000;

function option(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1] : undefined;
}

interface Sample {
  counter: number;
  timeMs: number;
  at: number;
  /** Browser only: when the frame went to the compositor (rVFC presentationTime), same clock. */
  presentedAt?: number;
}

interface Figures {
  frames: number;
  lost: number;
  unreadable: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  min: number;
  mean: number;
  /** CPU of the sender's process tree while the phase ran, % of one core. */
  senderCpuPercent: number;
}

interface Phase {
  name: string;
  latencies: number[];
  figures: Figures;
  /** Browser only: latency to the frame's hand-over to the compositor (rVFC presentationTime). */
  presented?: { latencies: number[]; figures: Figures };
  extra?: Record<string, number | undefined>;
}

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>();

function start(command: string, args: string[], label: string): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let errors = '';
  child.stderr?.on('data', (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-4000)));
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (code !== 0 && signal === null) console.error(`${label} exited with code ${code}:\n${errors}`);
  });
  return child;
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (child) await stopChild(child, { signal: 'SIGINT', graceMs: 6000 });
}

/** Lines of JSON a child prints on stdout. */
function jsonLines(child: ChildProcess, onLine: (value: Record<string, unknown>) => void): void {
  let rest = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        onLine(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a log line that happens to start with {
      }
    }
  });
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`bench:latency: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ---------------------------------------------------------------- CPU of a process tree (/proc)

function treeTicks(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + cpuTicks(pid), 0);
}

function cpuMeter(pid: number): () => number {
  const ticks = treeTicks(pid);
  const at = Date.now();
  return () => Math.round(((treeTicks(pid) - ticks) / 100 / ((Date.now() - at) / 1000)) * 1000) / 10;
}

// ---------------------------------------------------------------- figures

function figures(
  samples: Sample[],
  unreadable: number,
  senderCpuPercent: number,
  latencyOf: (sample: Sample) => number = (s) => s.at - s.timeMs,
): Figures {
  const latencies = samples.map(latencyOf).sort((a, b) => a - b);
  const pick = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  // Counters wrap at 65536; unwrap in arrival order, then count the gaps.
  const seen = new Set<number>();
  let base = 0;
  let previous: number | undefined;
  for (const { counter } of samples) {
    if (previous !== undefined && counter < previous - 32_768) base += 65_536;
    previous = counter;
    seen.add(base + counter);
  }
  const unwrapped = [...seen];
  const expected = unwrapped.length ? Math.max(...unwrapped) - Math.min(...unwrapped) + 1 : 0;
  return {
    frames: latencies.length,
    lost: expected - seen.size,
    unreadable,
    p50: pick(50),
    p95: pick(95),
    p99: pick(99),
    max: latencies.at(-1) ?? NaN,
    min: latencies[0] ?? NaN,
    mean: Math.round((latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length)) * 10) / 10,
    senderCpuPercent,
  };
}

// ---------------------------------------------------------------- the pieces

function staticServer(): Promise<{ server: Server; url: string }> {
  const files: Record<string, [string, string]> = {
    '/viewer.html': [join(PAGES, 'viewer.html'), 'text/html'],
    '/viewer.js': [join(PAGES, 'viewer.js'), 'text/javascript'],
    '/stamp.js': [STAMP_JS, 'text/javascript'],
  };
  const server = createServer((request, response) => {
    const file = files[new URL(request.url ?? '/', 'http://x').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    readFile(file[0]).then(
      (body) => response.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' }).end(body),
      () => response.writeHead(500).end(),
    );
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      resolve({ server, url: `http://127.0.0.1:${port}` });
    }),
  );
}

async function daemonConfig(dir: string, rtpPort: number, janus: TestJanus | undefined): Promise<string> {
  const brokerPort = await freePort();
  const file = join(dir, `outpost-${rtpPort}.yaml`);
  const config = {
    site: 'bench',
    device: 'latency',
    dataDir: join(dir, `data-${rtpPort}`),
    log: { level: 'warn' },
    broker: { tcp: { port: brokerPort } },
    sfu: janus
      ? { mode: 'janus', host: '127.0.0.1', janus: { url: janus.url, mountpointIdBase: MOUNTPOINT_ID } }
      : { mode: 'static', host: '127.0.0.1' },
    cameras: [
      {
        name: 'cam0',
        source: { type: 'test', stamp: true },
        ...CAMERA,
        encoder: 'x264enc',
        rtp: { port: rtpPort },
      },
    ],
  };
  // JSON is YAML.
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

function bareSender(port: number, stamp = true): ChildProcess {
  return start(
    process.execPath,
    [
      join(HERE, 'bare-sender.js'),
      '--port',
      String(port),
      '--name',
      'cam0',
      ...(stamp ? [] : ['--no-stamp']),
      '--width',
      String(CAMERA.width),
      '--height',
      String(CAMERA.height),
      '--framerate',
      String(CAMERA.framerate),
      '--bitrate',
      String(CAMERA.bitrateKbps),
    ],
    'bare sender',
  );
}

/** Collect `frames` stamped frames from a GStreamer receiver on `port` while `sender` runs. */
async function gstreamerPhase(name: string, port: number, startSender: () => ChildProcess): Promise<Phase> {
  const receiver = start(
    process.execPath,
    [join(HERE, 'gst-receiver.js'), '--port', String(port)],
    'receiver',
  );
  let ready = false;
  let samples: Sample[] = [];
  let unreadable = 0;
  jsonLines(receiver, (line) => {
    if (line.ready) ready = true;
    else if (line.unreadable) unreadable++;
    else samples.push(line as unknown as Sample);
  });
  await until('the GStreamer receiver', () => ready, 15_000);
  const sender = startSender();
  try {
    await until(`${name}: first frames`, () => samples.length >= WARMUP_FRAMES, 30_000);
    samples = [];
    unreadable = 0;
    const cpu = cpuMeter(sender.pid!);
    await until(
      `${name}: ${frames} frames`,
      () => samples.length >= frames,
      (frames / CAMERA.framerate) * 3000 + 20_000,
    );
    const result = figures(samples, unreadable, cpu());
    return { name, latencies: samples.map((s) => s.at - s.timeMs), figures: result };
  } finally {
    await stop(sender);
    await stop(receiver);
  }
}

interface Inbound {
  framesDecoded?: number;
  framesDropped?: number;
  packetsLost?: number;
  jitterBufferDelay?: number;
  jitterBufferEmittedCount?: number;
  totalDecodeTime?: number;
}

/** Load the viewer on the mountpoint and collect `frames` stamped frames while `sender` runs. */
async function browserPhase(
  name: string,
  page: Page,
  viewerUrl: string,
  startSender: () => ChildProcess,
): Promise<Phase> {
  const sender = startSender();
  try {
    await until('the mountpoint in Janus', () => mountpointListed(viewerUrl), 30_000);
    await page.goto(viewerUrl);
    await page.waitForFunction(
      (n) => {
        const viewer = (globalThis as unknown as { outpostViewer?: { error?: string; samples(): unknown[] } })
          .outpostViewer;
        if (viewer?.error) throw new Error(viewer.error);
        return (viewer?.samples().length ?? 0) >= n;
      },
      WARMUP_FRAMES,
      { timeout: 30_000, polling: 200 },
    );
    const inbound = (): Promise<Inbound | undefined> =>
      page.evaluate(
        (id) =>
          (
            globalThis as unknown as { outpostViewer: { inbound(id: number): Promise<Inbound | undefined> } }
          ).outpostViewer.inbound(id),
        MOUNTPOINT_ID,
      );
    await page.evaluate(() =>
      (globalThis as unknown as { outpostViewer: { reset(): void } }).outpostViewer.reset(),
    );
    const before = await inbound();
    const cpu = cpuMeter(sender.pid!);
    await page.waitForFunction(
      (n) =>
        (globalThis as unknown as { outpostViewer: { samples(): unknown[] } }).outpostViewer.samples()
          .length >= n,
      frames,
      { timeout: (frames / CAMERA.framerate) * 3000 + 20_000, polling: 500 },
    );
    const senderCpu = cpu();
    const after = await inbound();
    const { samples, unreadable } = await page.evaluate(() => {
      const viewer = (
        globalThis as unknown as { outpostViewer: { samples(): unknown[]; unreadable(): number } }
      ).outpostViewer;
      return { samples: viewer.samples() as Sample[], unreadable: viewer.unreadable() };
    });
    const delta = (key: keyof Inbound): number | undefined =>
      after?.[key] !== undefined && before?.[key] !== undefined ? after[key] - before[key] : undefined;
    const presentedLatency = (s: Sample): number => round((s.presentedAt ?? NaN) - s.timeMs);
    const emitted = delta('jitterBufferEmittedCount');
    const decoded = delta('framesDecoded');
    return {
      name,
      latencies: samples.map((s) => s.at - s.timeMs),
      figures: figures(samples, unreadable, senderCpu),
      presented: {
        latencies: samples.map(presentedLatency),
        figures: figures(samples, unreadable, senderCpu, presentedLatency),
      },
      extra: {
        framesDecoded: decoded,
        framesDropped: delta('framesDropped'),
        packetsLost: delta('packetsLost'),
        jitterBufferDelayMs: emitted ? round((delta('jitterBufferDelay')! / emitted) * 1000) : undefined,
        decodeMsPerFrame: decoded ? round((delta('totalDecodeTime')! / decoded) * 1000) : undefined,
      },
    };
  } finally {
    await stop(sender);
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

let janusForList: TestJanus | undefined;

/** Whether Janus lists our mountpoint (asked over its HTTP API, with a throwaway session). */
async function mountpointListed(_viewerUrl: string): Promise<boolean> {
  if (!janusForList) return false;
  const post = async (path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const response = await fetch(`${janusForList!.url}${path}`, {
      method: 'POST',
      body: JSON.stringify({ ...body, transaction: Math.random().toString(36).slice(2) }),
    });
    return (await response.json()) as Record<string, unknown>;
  };
  try {
    const session = ((await post('', { janus: 'create' })).data as { id: number }).id;
    const handle = (
      (await post(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data as {
        id: number;
      }
    ).id;
    const listed = await post(`/${session}/${handle}`, { janus: 'message', body: { request: 'list' } });
    await post(`/${session}`, { janus: 'destroy' });
    const list = (listed.plugindata as { data: { list?: Array<{ id: number }> } }).data.list ?? [];
    return list.some((m) => m.id === MOUNTPOINT_ID);
  } catch {
    return false;
  }
}

/** A CDF of each phase's latencies as SVG, rendered to PNG by the same Chromium. */
async function plot(context: BrowserContext, rows: ReturnType<typeof rowsOf>, file: string): Promise<void> {
  const phases = rows;
  const width = 900;
  const height = 520;
  const margin = { left: 70, right: 30, top: 50, bottom: 60 };
  const all = phases.flatMap((p) => p.latencies);
  const p99 = [...all].sort((a, b) => a - b)[Math.floor(all.length * 0.995)] ?? 100;
  const xMax = Math.max(10, Math.ceil((p99 * 1.15) / 10) * 10);
  const x = (ms: number): number =>
    margin.left + (Math.min(ms, xMax) / xMax) * (width - margin.left - margin.right);
  const y = (q: number): number => height - margin.bottom - q * (height - margin.top - margin.bottom);
  const colours = ['#d62728', '#ff7f0e', '#1f77b4', '#e377c2', '#bcbd22', '#17becf'];
  const curves = phases.map((phase, i) => {
    const sorted = [...phase.latencies].sort((a, b) => a - b);
    const points = sorted.map((ms, k) => `${x(ms).toFixed(1)},${y((k + 1) / sorted.length).toFixed(1)}`);
    const dash = phase.name.startsWith('bare') ? ' stroke-dasharray="6 4"' : '';
    return `<polyline fill="none" stroke="${colours[i]}" stroke-width="2"${dash} points="${points.join(' ')}"/>
      <text x="${width - margin.right - 440}" y="${y(0) - 20 - (phases.length - 1 - i) * 20}" fill="${colours[i]}" font-size="14">${phase.name}: p50 ${phase.figures.p50} · p95 ${phase.figures.p95} ms</text>`;
  });
  const ticks: string[] = [];
  for (let ms = 0; ms <= xMax; ms += xMax > 100 ? 20 : 10)
    ticks.push(
      `<line x1="${x(ms)}" x2="${x(ms)}" y1="${y(0)}" y2="${y(1)}" stroke="#ddd"/><text x="${x(ms)}" y="${y(0) + 18}" text-anchor="middle" font-size="12">${ms}</text>`,
    );
  for (const q of [0, 0.25, 0.5, 0.75, 0.95, 1])
    ticks.push(
      `<line x1="${x(0)}" x2="${x(xMax)}" y1="${y(q)}" y2="${y(q)}" stroke="#ddd"/><text x="${margin.left - 8}" y="${y(q) + 4}" text-anchor="end" font-size="12">${q}</text>`,
    );
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
    <rect width="100%" height="100%" fill="white"/>
    <text x="${margin.left}" y="28" font-size="16">Outpost glass-to-glass latency, 720p30 2 Mbit/s x264 zerolatency — CDF (${new Date().toISOString().slice(0, 16)}Z)</text>
    ${ticks.join('\n')}
    ${curves.join('\n')}
    <text x="${(width + margin.left) / 2}" y="${height - 15}" text-anchor="middle" font-size="13">capture → decoded frame, ms</text>
    <text x="18" y="${height / 2}" transform="rotate(-90 18 ${height / 2})" text-anchor="middle" font-size="13">fraction of frames</text>
  </svg>`;
  const page = await context.newPage();
  await page.setViewportSize({ width, height });
  await page.setContent(`<html><body style="margin:0">${svg}</body></html>`);
  await page.screenshot({ path: file });
  await page.close();
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const dir = await tempDir('outpost-latency-');
  const janus = await janusServer();
  janusForList = janus;
  const { server, url } = await staticServer();
  const janusPort = await freeUdpPortPair();
  const receiverPort = await freeUdpPortPair();
  const viewerUrl = `${url}/viewer.html?janus=${encodeURIComponent(janus.url)}&play=${MOUNTPOINT_ID}`;
  const context = await headlessChromium(join(dir, 'chromium-profile'));
  const phases: Phase[] = [];
  let stampCost: { stampedCpuPercent: number; videotestsrcCpuPercent: number } | undefined;
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const daemonJanus = await daemonConfig(dir, janusPort, janus);
    const daemonStatic = await daemonConfig(dir, receiverPort, undefined);
    const daemon = (file: string) => () => start(process.execPath, [CLI, 'run', '--config', file], 'daemon');
    console.log(
      `bench:latency: ${frames} frames per phase after ${WARMUP_FRAMES} warm-up frames; Janus ${janus.url}`,
    );
    phases.push(await browserPhase('daemon → Janus → browser', page, viewerUrl, daemon(daemonJanus)));
    phases.push(await gstreamerPhase('daemon → GStreamer', receiverPort, daemon(daemonStatic)));
    phases.push(await browserPhase('bare → Janus → browser', page, viewerUrl, () => bareSender(janusPort)));
    phases.push(await gstreamerPhase('bare → GStreamer', receiverPort, () => bareSender(receiverPort)));
    if (!process.argv.includes('--no-cost'))
      stampCost = {
        stampedCpuPercent: phases[3]!.figures.senderCpuPercent,
        videotestsrcCpuPercent: await cpuOf(() => bareSender(receiverPort, false), 10_000),
      };
    await plot(context, rowsOf(phases), join(outDir, 'latency-cdf.png'));
  } finally {
    await context.close();
    for (const child of [...children]) await stop(child);
    server.close();
    await janus.stop();
    await rm(dir, { recursive: true, force: true });
  }

  console.log('');
  console.log(
    'phase                                      frames  lost  p50   p95   p99   max  (ms)  sender CPU %',
  );
  for (const { name, figures: f } of rowsOf(phases)) {
    console.log(
      `${name.padEnd(42)} ${String(f.frames).padStart(6)} ${String(f.lost).padStart(5)} ${String(f.p50).padStart(4)} ${String(f.p95).padStart(5)} ${String(f.p99).padStart(5)} ${String(f.max).padStart(5)}        ${f.senderCpuPercent}`,
    );
  }
  for (const phase of phases)
    if (phase.extra) console.log(`${phase.name}: WebRTC inbound ${JSON.stringify(phase.extra)}`);
  const [daemonBrowser, daemonGst, bareBrowser, bareGst] = phases.map((p) => p.figures) as [
    Figures,
    Figures,
    Figures,
    Figures,
  ];
  const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
  const summary = {
    bench: 'latency',
    frames,
    camera: CAMERA,
    browser: pick(daemonBrowser),
    gstreamer: pick(daemonGst),
    bareBrowser: pick(bareBrowser),
    bareGstreamer: pick(bareGst),
    browserPresented: pick(phases[0]!.presented!.figures),
    bareBrowserPresented: pick(phases[2]!.presented!.figures),
    webrtc: { daemon: phases[0]!.extra, bare: phases[2]!.extra },
    ratioDaemonBare: {
      browserP50: ratio(daemonBrowser.p50, bareBrowser.p50),
      browserPresentedP50: ratio(phases[0]!.presented!.figures.p50, phases[2]!.presented!.figures.p50),
      gstreamerP50: ratio(daemonGst.p50, bareGst.p50),
      browserP95: ratio(daemonBrowser.p95, bareBrowser.p95),
      gstreamerP95: ratio(daemonGst.p95, bareGst.p95),
    },
    stampCost,
    plot: join(outDir, 'latency-cdf.png'),
  };
  console.log(
    `ratio daemon/bare at p50: browser ${summary.ratioDaemonBare.browserP50} (presented ${summary.ratioDaemonBare.browserPresentedP50}), GStreamer ${summary.ratioDaemonBare.gstreamerP50}`,
  );
  if (stampCost)
    console.log(
      `sender CPU, bare: stamped source ${stampCost.stampedCpuPercent} %, videotestsrc ${stampCost.videotestsrcCpuPercent} % of one core`,
    );
  console.log(`plot: ${summary.plot}`);
  await writeFile(
    join(outDir, 'latency.json'),
    `${JSON.stringify({ ...summary, latencies: Object.fromEntries(rowsOf(phases).map((row) => [row.name, row.latencies])) })}\n`,
  );
  console.log(JSON.stringify(summary));
}

/** One row per measured path: each phase, plus the browser phases' presentation-time latencies. */
function rowsOf(phases: Phase[]): Array<{ name: string; figures: Figures; latencies: number[] }> {
  return phases.flatMap((phase) => [
    phase,
    ...(phase.presented ? [{ name: `${phase.name} (presented)`, ...phase.presented }] : []),
  ]);
}

function pick(f: Figures): Omit<Figures, 'min' | 'mean'> & { mean: number } {
  return {
    frames: f.frames,
    lost: f.lost,
    unreadable: f.unreadable,
    p50: f.p50,
    p95: f.p95,
    p99: f.p99,
    max: f.max,
    mean: f.mean,
    senderCpuPercent: f.senderCpuPercent,
  };
}

/** CPU of a sender's process tree over `ms`, after 2 s of start-up. */
async function cpuOf(startSender: () => ChildProcess, ms: number): Promise<number> {
  const sender = startSender();
  try {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const cpu = cpuMeter(sender.pid!);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return cpu();
  } finally {
    await stop(sender);
  }
}

main().catch(async (error: unknown) => {
  console.error(error);
  for (const child of [...children]) await stop(child);
  process.exit(1);
});
