// The camera worker's side of the stamped test source (stamped-source.ts describes its appsrc): feeds
// the appsrc with I420 frames, each carrying its capture time and a frame counter as a block code
// (stamp.ts), written the moment the frame is pushed.
//
// This is the one place where the worker touches every frame in JavaScript, against DESIGN.md's rule,
// because it is a measurement instrument, not a camera: the stamp must be the host clock at capture,
// which no GStreamer element writes as a machine-readable picture (timeoverlay draws text that would
// need OCR, and its time is the running time, not the wall clock). The work per frame is small and
// bounded: one static background prepared once, then per frame a 128 × 160 stamp and a 64 × 64 moving
// square (so the encoder has motion to code) written in place, and one copy into a GstBuffer by
// gstreamer-superficial's `push`.
import { stampFits, writeStamp } from './stamp.js';

/** What the source needs of gstreamer-superficial's appsrc wrapper. */
export interface AppSrc {
  push(buffer: Buffer): void;
  caps?: unknown;
}

export interface FrameShape {
  width: number;
  height: number;
  framerate: number;
}

/** Width, height and framerate from the appsrc's caps as GStreamer prints them. */
export function shapeFromCaps(text: string): FrameShape | undefined {
  const width = /width=(?:\(int\))?(\d+)/.exec(text)?.[1];
  const height = /height=(?:\(int\))?(\d+)/.exec(text)?.[1];
  const rate = /framerate=(?:\(fraction\))?(\d+)\/(\d+)/.exec(text);
  if (!width || !height || !rate) return undefined;
  return { width: Number(width), height: Number(height), framerate: Number(rate[1]) / Number(rate[2]) };
}

const SQUARE = 64;

/** Feeds an appsrc with stamped frames at the configured rate until stopped. */
export class StampedSource {
  private timer: NodeJS.Timeout | undefined;
  private counter = 0;
  private readonly frame: Buffer;
  private readonly background: Buffer;
  private readonly periodMs: number;
  private startedAt = 0;
  private square = { x: 0, y: 0 };

  constructor(
    private readonly appsrc: AppSrc,
    private readonly shape: FrameShape,
    private readonly clock: () => number = Date.now,
  ) {
    if (!stampFits(shape.width, shape.height))
      throw new RangeError(`a ${shape.width}×${shape.height} frame is too small for the latency stamp`);
    this.periodMs = 1000 / shape.framerate;
    this.background = colourBars(shape.width, shape.height);
    this.frame = Buffer.from(this.background);
  }

  start(): void {
    this.startedAt = this.clock();
    this.tick();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Push one frame, then wait for the next frame's slot (drift-free: slots are counted from start). */
  private tick(): void {
    this.pushFrame();
    const next = this.startedAt + this.counter * this.periodMs;
    this.timer = setTimeout(() => this.tick(), Math.max(0, next - this.clock()));
  }

  private pushFrame(): void {
    const { width, height } = this.shape;
    this.moveSquare();
    // The stamp is the last thing written, right before the push: its time is the capture time.
    writeStamp(this.frame, width, height, { timeMs: this.clock(), counter: this.counter });
    this.counter++;
    this.appsrc.push(this.frame);
  }

  /** A white square crossing the lower half, one step per frame: motion for the encoder. */
  private moveSquare(): void {
    const { width, height } = this.shape;
    const size = Math.min(SQUARE, Math.floor(height / 4) & ~1);
    const restore = (x: number, y: number): void => {
      for (let row = y; row < y + size; row++)
        this.background.copy(this.frame, row * width + x, row * width + x, row * width + x + size);
    };
    restore(this.square.x, this.square.y);
    const span = width - size;
    const x = (this.counter * 8) % (2 * span);
    this.square = { x: x < span ? x : 2 * span - x, y: height - size - (height >> 3) };
    for (let row = this.square.y; row < this.square.y + size; row++)
      this.frame.fill(235, row * width + this.square.x, row * width + this.square.x + size);
  }
}

/** Seven vertical bars (BT.601 limited-range YUV of white, yellow, cyan, green, magenta, red, blue). */
function colourBars(width: number, height: number): Buffer {
  const bars: Array<[number, number, number]> = [
    [180, 128, 128],
    [162, 44, 142],
    [131, 156, 44],
    [112, 72, 58],
    [84, 184, 198],
    [65, 100, 212],
    [35, 212, 114],
  ];
  const frame = Buffer.alloc((width * height * 3) / 2);
  const chromaWidth = width / 2;
  const uPlane = width * height;
  const vPlane = uPlane + chromaWidth * (height / 2);
  for (let x = 0; x < width; x++) {
    const [y, u, v] = bars[Math.min(bars.length - 1, Math.floor((x * bars.length) / width))]!;
    for (let row = 0; row < height; row++) frame[row * width + x] = y;
    if (x % 2 === 0) {
      for (let row = 0; row < height / 2; row++) {
        frame[uPlane + row * chromaWidth + x / 2] = u;
        frame[vPlane + row * chromaWidth + x / 2] = v;
      }
    }
  }
  return frame;
}

/** What the worker needs of a gstreamer-superficial Pipeline. */
interface PipelineLike {
  findChild(name: string): Record<string, unknown> | undefined;
}

/**
 * Start feeding the appsrc named `name` (stamped-source.ts's STAMPED_SOURCE_NAME); undefined when the
 * pipeline has no such appsrc. The frame shape comes from the appsrc's own caps, so the rendered
 * description stays the one source of truth.
 */
export function startStampedSource(pipeline: PipelineLike, name: string): StampedSource | undefined {
  const appsrc = pipeline.findChild(name);
  if (!appsrc || typeof appsrc.push !== 'function') return undefined;
  const shape = shapeFromCaps(String(appsrc.caps));
  if (!shape) throw new Error(`stamped source: cannot read the frame shape from caps ${String(appsrc.caps)}`);
  const source = new StampedSource(appsrc as unknown as AppSrc, shape);
  source.start();
  return source;
}
