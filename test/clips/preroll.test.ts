// The camera pre-roll with real GStreamer: a camera's pipeline keeps its own H.264 in keyframe-aligned
// segments on a bounded ring, and a clip is pre-roll + post-roll of those very frames, muxed without
// re-encoding. The cameras are stamped test sources (each frame carries its capture time as a block
// code, camera/stamp.ts), so decoding the clip shows exactly when its first and last frames were taken.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Camera, type PreRollHook } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { readStamp, type Stamp } from '../../daemon/src/camera/stamp.js';
import { PreRollClipSource } from '../../daemon/src/clips/mux.js';
import { steadyNow, steadyToWall } from '../../daemon/src/clock.js';
import { PreRoll, preRollRoot, type PreRollRing } from '../../daemon/src/clips/preroll.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { freeUdpPortPair, tempDir, until } from '../support/processes.js';

const run = promisify(execFile);
const log = pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
const fast = {
  stallMs: 5000,
  backoffMinMs: 300,
  backoffMaxMs: 1000,
  exitGraceMs: 1000,
  // Long enough that the test's 3 s look at the camera without its pre-roll ends before the retry,
  // even when the restart to stream without it took seconds under the full suite's load.
  preRollRetryMs: 10_000,
};
const WIDTH = 320;
const HEIGHT = 240;
const KEYFRAME_MS = 1000;

const encoders = new Encoders(log);
beforeAll(() => encoders.start(), 60_000);

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** PreRoll + cameras + the clip source, wired as app.ts wires them. */
async function startBox(options: {
  preRollSeconds: number;
  postRollSeconds: number;
  broken?: string[];
  /** Runs once the pre-roll folders are empty and before the cameras start. */
  beforeCameras?: (preroll: PreRoll) => Promise<void>;
  /** What a camera reports its segments to (its ring by default). */
  hookFor?: (ring: PreRollRing) => PreRollHook;
}) {
  const dataDir = await tempDir('outpost-preroll-');
  const port = await freeUdpPortPair();
  const config = configSchema.parse({
    dataDir,
    cameras: [
      ...['cam0', 'cam1'].map((name, index) => ({
        name,
        width: WIDTH,
        height: HEIGHT,
        framerate: 15,
        keyframeIntervalSeconds: KEYFRAME_MS / 1000,
        encoder: 'x264enc',
        source: { type: 'test', stamp: true },
        rtp: { port: port + 2 * index },
      })),
      // A camera whose device is not there: it retries with backoff and never streams.
      ...(options.broken ?? []).map((name) => ({
        name,
        width: WIDTH,
        height: HEIGHT,
        source: { type: 'v4l2', device: '/dev/outpost-no-such-camera' },
        rtp: { port: port + 8 },
      })),
    ],
    clips: { preRollSeconds: options.preRollSeconds, postRollSeconds: options.postRollSeconds },
  });
  const preroll = new PreRoll(
    config.cameras,
    { root: preRollRoot(config), preRollSeconds: config.clips.preRollSeconds },
    log,
  );
  const cameras = config.cameras.map((camera) => {
    const ring = preroll.ring(camera.name)!;
    const hook = options.hookFor?.(ring) ?? ring;
    return new Camera({ camera, sfu: config.sfu, encoders, log, timings: fast, preroll: hook });
  });
  await preroll.start();
  await options.beforeCameras?.(preroll);
  for (const camera of cameras) await camera.start();
  stops.push(async () => {
    for (const camera of cameras) await camera.stop();
    await preroll.stop();
  });
  return { config, preroll, cameras, source: new PreRollClipSource(preroll, log), dataDir };
}

/** A box (1 s pre-roll and post-roll) whose cam0 pre-roll folder holds `name`, made by `make`, before its cameras start. */
function startBoxWithSegment(name: string, make: (path: string) => Promise<unknown>) {
  return startBox({
    preRollSeconds: 1,
    postRollSeconds: 1,
    beforeCameras: async (preroll) => {
      const dir = preroll.ring('cam0')!.dir;
      await mkdir(dir, { recursive: true });
      await make(join(dir, name));
    },
  });
}

/** Duration and stream list reported by gst-discoverer-1.0. */
async function discover(file: string): Promise<{ ms: number; tracks: number; text: string }> {
  const { stdout } = await run('gst-discoverer-1.0', [file], { timeout: 30_000 });
  const match = /Duration: (\d+):(\d+):(\d+\.\d+)/.exec(stdout);
  if (!match) throw new Error(`gst-discoverer-1.0 gave no duration:\n${stdout}`);
  const ms = (Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3])) * 1000;
  return { ms, tracks: (stdout.match(/video #\d+: H\.264/g) ?? []).length, text: stdout };
}

/** The first video track's buffers as qtdemux hands them out: is the first one a keyframe? */
async function firstBufferIsKeyframe(file: string): Promise<{ keyframe: boolean; line: string }> {
  const { stdout } = await run(
    'gst-launch-1.0',
    ['-v', 'filesrc', `location=${file}`, '!', 'qtdemux', '!', 'identity', 'silent=false', '!', 'fakesink'],
    { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 },
  );
  const line = stdout.split('\n').find((l) => l.includes('last-message = chain')) ?? '';
  return { keyframe: line !== '' && !line.includes('delta-unit'), line };
}

/** Decode the first video track (of an MP4, or of an MPEG-TS segment) and read every frame's capture stamp. */
async function stampsOf(file: string, dir: string, demuxer = 'qtdemux'): Promise<Stamp[]> {
  const raw = join(dir, `${basename(file)}.i420`);
  await run(
    'gst-launch-1.0',
    [
      '-q', 'filesrc', `location=${file}`, '!', demuxer, '!', 'h264parse', '!', 'avdec_h264', '!',
      `video/x-raw,format=I420,width=${WIDTH},height=${HEIGHT}`, '!', 'filesink', `location=${raw}`,
    ], // prettier-ignore
    { timeout: 60_000 },
  );
  const bytes = await readFile(raw);
  const frameBytes = (WIDTH * HEIGHT * 3) / 2;
  const stamps: Stamp[] = [];
  for (let offset = 0; offset + frameBytes <= bytes.length; offset += frameBytes) {
    const stamp = readStamp({
      data: bytes.subarray(offset, offset + frameBytes),
      width: WIDTH,
      height: HEIGHT,
      format: 'I420',
    });
    if (stamp) stamps.push(stamp);
  }
  return stamps;
}

/** The pre-roll of one camera (cam0: a keyframe a second, 15 fps) under `root`, with no camera running. */
function lonePreRoll(root: string, preRollSeconds: number): PreRoll {
  return new PreRoll(
    [{ name: 'cam0', keyframeIntervalSeconds: 1, framerate: 15 }],
    { root, preRollSeconds },
    log,
  );
}

/** A started lone pre-roll (in a temp folder named `prefix`…) and its cam0 ring, launched once. */
async function launchedRing(prefix: string, preRollSeconds: number) {
  const preroll = lonePreRoll(await tempDir(prefix), preRollSeconds);
  await preroll.start();
  const ring = preroll.ring('cam0')!;
  ring.launch();
  return { preroll, ring };
}

describe('camera pre-roll', () => {
  it('a clip is the camera’s own video from before the press through the post-roll, starting at a keyframe', async () => {
    const pre = 3000;
    const post = 2000;
    const box = await startBox({ preRollSeconds: pre / 1000, postRollSeconds: post / 1000 });
    const ring = box.preroll.ring('cam0')!;
    await until(() => ring.files() >= pre / KEYFRAME_MS + 1, 30_000, 'the pre-roll to fill');

    const at = Date.now();
    const outPath = join(box.dataDir, 'clip.mp4');
    const controller = new AbortController();
    const captured = await box.source.capture({
      clipId: 'c1',
      preMs: pre,
      postMs: post,
      cameras: ['cam0'],
      at,
      outPath,
      signal: controller.signal,
    });
    expect(captured.cameras).toEqual(['cam0']);

    // A valid MP4 within one keyframe interval of pre + post.
    const { ms, tracks, text } = await discover(outPath);
    expect(tracks, text).toBe(1);
    expect(ms, text).toBeGreaterThanOrEqual(pre + post - KEYFRAME_MS);
    expect(ms, text).toBeLessThanOrEqual(pre + post + KEYFRAME_MS);
    const first = await firstBufferIsKeyframe(outPath);
    expect(first.keyframe, first.line).toBe(true);

    // The frames themselves say when they were taken: the first at (or up to one keyframe interval
    // before) press − pre, so from before the press; the last at press + post.
    const stamps = await stampsOf(outPath, box.dataDir);
    expect(stamps.length).toBeGreaterThan(((pre + post) / 1000) * 15 * 0.9);
    const firstAt = stamps[0]!.timeMs;
    const lastAt = stamps.at(-1)!.timeMs;
    // 250 ms: the segment times come from the pipeline's running time mapped to the wall clock at play().
    expect(firstAt).toBeLessThanOrEqual(at - pre + 250);
    expect(firstAt).toBeGreaterThanOrEqual(at - pre - KEYFRAME_MS - 250);
    expect(Math.abs(lastAt - (at + post))).toBeLessThanOrEqual(250);
    // What the clip's record says it covers is what its frames say.
    expect(Math.abs(captured.startAt - firstAt)).toBeLessThanOrEqual(150);
    // Consecutive frames: nothing lost at the segment joins (frame counters step by one).
    const steps = stamps.slice(1).map((stamp, i) => (stamp.counter - stamps[i]!.counter + 65_536) % 65_536);
    expect(new Set(steps)).toEqual(new Set([1]));
  }, 90_000);

  it('a clip is made as usual after the wall clock steps (chrony setting a Pi clock after boot, cameras already running)', async () => {
    const pre = 2000;
    const post = 1000;
    const box = await startBox({ preRollSeconds: pre / 1000, postRollSeconds: post / 1000 });
    const ring = box.preroll.ring('cam0')!;
    await until(() => ring.files() >= pre / KEYFRAME_MS + 1, 30_000, 'the pre-roll to fill');
    // The daemon's wall clock jumps 180 days ahead; the camera worker's frame stamps keep the real time.
    const step = 180 * 86_400_000;
    const realNow = Date.now.bind(Date);
    const stepped = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + step);
    try {
      const at = Date.now();
      const outPath = join(box.dataDir, 'clip-after-step.mp4');
      const captured = await box.source.capture({
        clipId: 'c-step',
        preMs: pre,
        postMs: post,
        cameras: ['cam0'],
        at,
        outPath,
        signal: new AbortController().signal,
      });
      const stamps = await stampsOf(outPath, box.dataDir);
      const firstAt = stamps[0]!.timeMs;
      expect(firstAt).toBeLessThanOrEqual(at - step - pre + 250);
      expect(firstAt).toBeGreaterThanOrEqual(at - step - pre - KEYFRAME_MS - 250);
      expect(Math.abs(stamps.at(-1)!.timeMs - (at - step + post))).toBeLessThanOrEqual(250);
      // The record is in the wall clock as it reads now (stepped).
      expect(Math.abs(captured.startAt - step - firstAt)).toBeLessThanOrEqual(150);
    } finally {
      stepped.mockRestore();
    }
  }, 90_000);

  it('a segment is reported only once its whole GOP is in its file, within a fraction of a keyframe interval of its end', async () => {
    // Each report is checked against the file as it was at that moment: a copy taken when the report
    // arrives. A segment reported before its GOP were complete would leave frames out of the copy (the
    // frame counters would skip between copies) or grow after it.
    const reports: { path: string; startAt: number; endAt: number; at: number; copy: string }[] = [];
    const copies = await tempDir('outpost-preroll-copies-');
    const box = await startBox({
      // Long enough that no reported segment is pruned during the test.
      preRollSeconds: 30,
      postRollSeconds: 1,
      hookFor: (ring) =>
        ring.camera !== 'cam0'
          ? ring
          : {
              segmentSeconds: ring.segmentSeconds,
              launch: () => ring.launch(),
              segment: (report) => {
                if (report.startAt !== undefined) {
                  const copy = join(copies, basename(report.path));
                  copyFileSync(report.path, copy);
                  reports.push({ ...report, startAt: report.startAt, at: steadyNow(), copy });
                }
                ring.segment(report);
              },
            },
    });
    await until(() => reports.length >= 5, 30_000, 'five segments of cam0');
    await box.cameras[0]!.stop();

    const stamps: Stamp[][] = [];
    for (const report of reports) {
      // Nothing was written to the file after it was reported.
      expect(statSync(report.path).size, report.path).toBe(statSync(report.copy).size);
      stamps.push(await stampsOf(report.copy, box.dataDir, 'tsdemux'));
    }
    for (const [i, report] of reports.entries()) {
      const own = stamps[i]!;
      // A GOP a segment at 15 fps, a keyframe a second; it decodes alone, from its first frame.
      expect(own.length, report.path).toBeGreaterThanOrEqual(13);
      expect(own.length, report.path).toBeLessThanOrEqual(17);
      // The stamps are wall-clock times; the ring's are steady-clock ones.
      expect(Math.abs(own[0]!.timeMs - steadyToWall(report.startAt)), report.path).toBeLessThanOrEqual(150);
      const frames = [...own, ...(stamps[i + 1]?.slice(0, 1) ?? [])];
      // Consecutive frames within it and on into the next segment: none missing at its end.
      const steps = frames.slice(1).map((stamp, j) => (stamp.counter - frames[j]!.counter + 65_536) % 65_536);
      expect(new Set(steps), report.path).toEqual(new Set([1]));
    }
    // Reported as the next keyframe reaches the file sink: tens of ms after the segment's end, where
    // splitmuxsink reported it a keyframe interval late. A median, for a loaded machine.
    const late = reports.map((report) => report.at - report.endAt).sort((a, b) => a - b);
    expect(late[Math.floor(late.length / 2)]!).toBeLessThan(KEYFRAME_MS / 2);
  }, 90_000);

  it('the ring stays bounded: after more than twice the pre-roll it holds the pre-roll and a segment', async () => {
    const pre = 2000;
    const box = await startBox({ preRollSeconds: pre / 1000, postRollSeconds: 1 });
    const ring = box.preroll.ring('cam0')!;
    const dir = join(preRollRoot(box.config), 'cam0');
    // Kept: the segments ending within pre + one segment of the newest, i.e. at most this many finished ones.
    const bound = (pre + KEYFRAME_MS) / KEYFRAME_MS + 1;
    const started = Date.now();
    const seen: number[] = [];
    while (Date.now() - started < 3 * pre + 2000) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      seen.push((await readdir(dir)).length);
      expect(ring.files()).toBeLessThanOrEqual(bound);
    }
    // The files on disk: the kept ones plus the one being written, plus, for the moment between a
    // file's close and its report reaching the ring (longer on a loaded machine), the one it displaces.
    expect(Math.max(...seen)).toBeLessThanOrEqual(bound + 2);
    expect(ring.files()).toBeGreaterThanOrEqual(pre / KEYFRAME_MS);
    // 15 fps 320×240 at the default 2 Mbit/s: about 250 KB a second at most.
    expect(ring.bytes()).toBeLessThan(bound * 400_000);
    expect(box.preroll.usage().find((u) => u.camera === 'cam0')?.bytes).toBe(ring.bytes());
  }, 60_000);

  it('a pre-roll branch stuck on its filesystem never stalls the RTP stream', async () => {
    // The fourth file is a FIFO nobody reads: opening it blocks the pre-roll branch's thread for good.
    // (The first file, whose start is unknown, is deleted; the second and third are the ring's two.)
    const box = await startBoxWithSegment('1-00000003.ts', (path) => run('mkfifo', [path]));
    const camera = box.cameras[0]!;
    const ring = box.preroll.ring('cam0')!;
    await until(() => ring.files() === 2, 30_000, 'two segments before the stuck one');
    // Without the leaky queue the tee blocks once the 2 s queue has filled up after the stuck open, and
    // the RTP stream stops: no packets from 4 s to 8 s.
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await sleep(4000);
    const at4s = camera.status().packets;
    await sleep(4000);
    const status = camera.status();
    expect(status.state).toBe('streaming');
    expect(status.restarts).toBe(0);
    // 4 s at 15 fps, at least one RTP packet a frame; allow for a busy machine.
    expect(status.packets - at4s).toBeGreaterThan(4 * 15 * 0.7);
    expect(ring.files()).toBe(2);
  }, 60_000);

  it('a pre-roll branch that cannot write costs one camera restart: RTP runs without it, not in a loop, and it is tried again later', async () => {
    // The first segment file is a link to /dev/full: every write fails with ENOSPC, as on a full /run.
    const box = await startBoxWithSegment('1-00000000.ts', (path) => symlink('/dev/full', path));
    const camera = box.cameras[0]!;
    await until(
      () => camera.status().preRollOff !== undefined && camera.status().state === 'streaming',
      30_000,
      'the camera streaming again without its pre-roll',
    );
    const { restarts, packets } = camera.status();
    expect(restarts).toBe(1);
    expect(camera.status().preRollOff).toMatch(/space/i);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const after = camera.status();
    expect(after.restarts).toBe(1);
    expect(after.state).toBe('streaming');
    expect(after.packets - packets).toBeGreaterThan(3 * 15 * 0.7);
    expect(box.preroll.ring('cam0')!.files()).toBe(0);
    // The other camera's pre-roll is untouched.
    expect(box.cameras[1]!.status().preRollOff).toBeUndefined();
    expect(box.preroll.ring('cam1')!.files()).toBeGreaterThan(0);
    // preRollRetryMs later the camera restarts with the branch; this worker's files are writable.
    await until(
      () => box.preroll.ring('cam0')!.files() > 0,
      30_000,
      'the pre-roll back after preRollRetryMs',
    );
    expect(camera.status().preRollOff).toBeUndefined();
    expect(camera.status().restarts).toBe(2);
  }, 60_000);

  it('a segment file cut short (not whole MPEG-TS packets, as when a full folder failed its last write) is never used', async () => {
    const { preroll, ring } = await launchedRing('outpost-preroll-short-', 2);
    const whole = join(ring.dir, '1-00000001.ts');
    const short = join(ring.dir, '1-00000002.ts');
    await writeFile(whole, Buffer.alloc(188 * 1000));
    // stdio writes 4 KiB blocks: a file whose last flush failed ends on a block, mid-packet.
    await writeFile(short, Buffer.alloc(4096 * 46));
    ring.segment({ path: whole, startAt: 1000, endAt: 2000 });
    ring.segment({ path: short, startAt: 2000, endAt: 3000 });
    // Empty (a GOP under 4 KiB whose only flush failed) or gone: not used either.
    const empty = join(ring.dir, '1-00000003.ts');
    await writeFile(empty, Buffer.alloc(0));
    ring.segment({ path: empty, startAt: 3000, endAt: 4000 });
    ring.segment({ path: join(ring.dir, '1-00000004.ts'), startAt: 4000, endAt: 5000 });
    expect(ring.files()).toBe(1);
    expect(ring.newestEnd()).toBe(2000);
    await until(() => !existsSync(short) && !existsSync(empty), 5000, 'the short and empty files deleted');
    await preroll.stop();
  });

  it("a worker's last file, closed without a report when it stopped, is deleted when the next worker starts", async () => {
    const { preroll, ring } = await launchedRing('outpost-preroll-orphan-', 30);
    const kept = join(ring.dir, '1-00000001.ts');
    const unreported = join(ring.dir, '1-00000002.ts');
    await writeFile(kept, Buffer.alloc(188 * 100));
    await writeFile(unreported, Buffer.alloc(188 * 50));
    const pin = ring.pin(0); // a clip still needs worker 1's segment
    ring.segment({ path: kept, startAt: 1000, endAt: 2000 });
    ring.launch();
    await until(() => !existsSync(unreported), 5000, 'the unreported file deleted');
    expect(existsSync(kept)).toBe(true);
    pin.release();
    await preroll.stop();
  });

  it('start and stop delete only segment files: a clips.preRollDir shared with other files keeps them', async () => {
    const root = await tempDir('outpost-preroll-shared-');
    await mkdir(join(root, 'cam0'));
    await writeFile(join(root, 'keep.txt'), 'not ours');
    await writeFile(join(root, 'cam0', 'notes.txt'), 'not ours either');
    await writeFile(join(root, 'cam0', '3-00000007.ts'), 'a stale segment');
    const preroll = lonePreRoll(root, 2);
    await preroll.start();
    expect((await readdir(join(root, 'cam0'))).sort()).toEqual(['notes.txt']);
    await writeFile(join(root, 'cam0', '1-00000000.ts'), 'a segment');
    await preroll.stop();
    expect((await readdir(root)).sort()).toEqual(['cam0', 'keep.txt']);
    expect(await readdir(join(root, 'cam0'))).toEqual(['notes.txt']);
  });

  it('with a camera not streaming, the clip is made from the others, one track each, and names them', async () => {
    const box = await startBox({ preRollSeconds: 1, postRollSeconds: 1, broken: ['cam2'] });
    await until(
      () => (box.preroll.ring('cam0')?.files() ?? 0) >= 2 && (box.preroll.ring('cam1')?.files() ?? 0) >= 2,
      30_000,
      'both pre-rolls to fill',
    );
    const outPath = join(box.dataDir, 'clip.mp4');
    const captured = await box.source.capture({
      clipId: 'c2',
      preMs: 1000,
      postMs: 1000,
      cameras: ['cam0', 'cam1', 'cam2'],
      at: Date.now(),
      outPath,
      signal: new AbortController().signal,
    });
    expect(captured.cameras).toEqual(['cam0', 'cam1']);
    const { ms, tracks, text } = await discover(outPath);
    expect(tracks, text).toBe(2);
    expect(ms, text).toBeLessThanOrEqual(2000 + KEYFRAME_MS);
    expect(ms, text).toBeGreaterThanOrEqual(2000 - KEYFRAME_MS);

    // Only the camera that cannot stream: a clear error, not an empty file.
    await expect(
      box.source.capture({
        clipId: 'c3',
        preMs: 1000,
        postMs: 500,
        cameras: ['cam2'],
        at: Date.now(),
        outPath: join(box.dataDir, 'none.mp4'),
        signal: new AbortController().signal,
      }),
    ).rejects.toThrow(/no video for clip c3: camera\(s\) cam2/);
  }, 90_000);
});
