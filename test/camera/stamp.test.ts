// The latency stamp survives a real H.264 round trip: raw I420 frames with stamps written by
// writeStamp go through GStreamer's x264enc at the camera defaults (720p30, 2 Mbit/s, zerolatency,
// ultrafast, constrained baseline) and avdec_h264, and every stamp is read back exactly. The
// background is the hard case for the stamp: moving detail plus noise that starves rate control.
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  readStamp,
  STAMP_HEIGHT,
  STAMP_WIDTH,
  stampBits,
  writeStamp,
  type Stamp,
} from '../../daemon/src/camera/stamp.js';
import { tempDir } from '../support/processes.js';

const run = promisify(execFile);
const WIDTH = 1280;
const HEIGHT = 720;
const FRAME_BYTES = (WIDTH * HEIGHT * 3) / 2;
const FRAMES = 45;

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** A frame that is hard to encode: a moving diagonal gradient, noise below, coloured chroma. */
function busyFrame(index: number, seed: { value: number }): Uint8Array {
  const frame = new Uint8Array(FRAME_BYTES);
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      let luma = (x + y + index * 12) % 256;
      if (y > HEIGHT / 3) {
        seed.value = (seed.value * 1_103_515_245 + 12_345) % 2 ** 31;
        luma = (luma + (seed.value >> 16)) % 256;
      }
      frame[y * WIDTH + x] = luma;
    }
  }
  frame.fill(90, WIDTH * HEIGHT, WIDTH * HEIGHT * 1.25);
  frame.fill(170, WIDTH * HEIGHT * 1.25);
  return frame;
}

function rgbaOf(frame: Uint8Array): Uint8ClampedArray {
  // Grey RGBA from the Y plane's stamp area, as a canvas holding a black-and-white stamp would.
  const rgba = new Uint8ClampedArray(STAMP_WIDTH * STAMP_HEIGHT * 4);
  for (let y = 0; y < STAMP_HEIGHT; y++) {
    for (let x = 0; x < STAMP_WIDTH; x++) {
      const luma = frame[y * WIDTH + x]!;
      // limited range → full range, as a browser converts for display
      const full = Math.max(0, Math.min(255, Math.round(((luma - 16) * 255) / 219)));
      rgba.set([full, full, full, 255], (y * STAMP_WIDTH + x) * 4);
    }
  }
  return rgba;
}

describe('latency stamp', () => {
  it('reads back what it wrote, from I420 and from RGBA', () => {
    const frame = new Uint8Array(FRAME_BYTES).fill(128);
    const stamp = { timeMs: 1_790_000_000_123, counter: 65_535 };
    writeStamp(frame, WIDTH, HEIGHT, stamp);
    expect(readStamp({ data: frame, width: WIDTH, height: HEIGHT, format: 'I420' })).toEqual(stamp);
    expect(
      readStamp({ data: rgbaOf(frame), width: STAMP_WIDTH, height: STAMP_HEIGHT, format: 'RGBA' }),
    ).toEqual(stamp);
  });

  it('rejects a frame without a stamp and a stamp with one cell misread', () => {
    const blank = new Uint8Array(FRAME_BYTES).fill(200);
    expect(readStamp({ data: blank, width: WIDTH, height: HEIGHT, format: 'I420' })).toBeUndefined();
    const frame = new Uint8Array(FRAME_BYTES).fill(128);
    writeStamp(frame, WIDTH, HEIGHT, { timeMs: 1_790_000_000_000, counter: 7 });
    // Flip one time cell (bit 20): the CRC no longer matches.
    const x0 = (20 % 8) * 16;
    const y0 = Math.floor(20 / 8) * 16;
    const flipped = frame[y0 * WIDTH + x0] === 235 ? 16 : 235;
    for (let y = y0; y < y0 + 16; y++) frame.fill(flipped, y * WIDTH + x0, y * WIDTH + x0 + 16);
    expect(readStamp({ data: frame, width: WIDTH, height: HEIGHT, format: 'I420' })).toBeUndefined();
  });

  it('refuses a time that does not fit in 44 bits', () => {
    expect(() => stampBits({ timeMs: 2 ** 44, counter: 0 })).toThrow(/44 bits/);
    expect(stampBits({ timeMs: 0, counter: 0 })).toHaveLength(80);
  });

  it(`survives x264 at 2 Mbit/s 720p30 (zerolatency, ultrafast) and avdec_h264: ${FRAMES} of ${FRAMES} frames exact`, async () => {
    const dir = await tempDir('outpost-stamp-');
    dirs.push(dir);
    const raw = join(dir, 'in.i420');
    const decoded = join(dir, 'out.i420');
    const seed = { value: 42 };
    const start = 1_790_000_000_000;
    const written: Stamp[] = [];
    const frames: Uint8Array[] = [];
    for (let i = 0; i < FRAMES; i++) {
      const frame = busyFrame(i, seed);
      // Uneven steps, as a live source's timer gives.
      const stamp = { timeMs: start + i * 33 + (i % 7), counter: 65_520 + i };
      writeStamp(frame, WIDTH, HEIGHT, stamp);
      written.push({ timeMs: stamp.timeMs, counter: stamp.counter & 0xffff });
      frames.push(frame);
    }
    await writeFile(raw, Buffer.concat(frames));
    await run(
      'gst-launch-1.0',
      [
        '-q',
        ...`filesrc location=${raw} ! rawvideoparse format=i420 width=${WIDTH} height=${HEIGHT} framerate=30/1`.split(
          ' ',
        ),
        '!',
        ...'x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=30'.split(' '),
        '!',
        'video/x-h264,profile=constrained-baseline',
        '!',
        'avdec_h264',
        '!',
        `video/x-raw,format=I420,width=${WIDTH},height=${HEIGHT}`,
        '!',
        'filesink',
        `location=${decoded}`,
      ],
      { timeout: 60_000 },
    );
    const out = await readFile(decoded);
    expect(out.length).toBe(FRAMES * FRAME_BYTES);
    const read: Array<Stamp | undefined> = [];
    for (let i = 0; i < FRAMES; i++) {
      const frame = out.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES);
      read.push(readStamp({ data: frame, width: WIDTH, height: HEIGHT, format: 'I420' }));
    }
    expect(read).toEqual(written);
  }, 90_000);
});
