// A camera's measured output: encoded frames per second and kbit/s, from the counters its worker reads
// in GStreamer once a second (an `identity` named `meter` after the encoder; worker.ts). Measured over
// the last few reports, on the worker's own monotonic clock, so IPC delay does not count and a keyframe
// is not a spike.

/** Rates are measured over the last few stats messages (one a second). */
const RATE_WINDOW_SAMPLES = 5;

export interface MeterSample {
  /** The worker's monotonic clock when it read the counters. */
  atMs: number;
  frames: number;
  bytes: number;
}

export class RateMeter {
  private samples: MeterSample[] = [];
  /** undefined until the first measurement; 0 while nothing flows. */
  private fpsNow: number | undefined;
  private kbpsNow: number | undefined;

  get fps(): number | undefined {
    return this.fpsNow;
  }

  get bitrateKbps(): number | undefined {
    return this.kbpsNow;
  }

  /** A new worker counts from zero: forget the last one's samples (its rates stand until measured anew). */
  restart(): void {
    this.samples = [];
  }

  /** Nothing flows (the worker failed, or the camera stopped): 0, not the last good figure. */
  zero(): void {
    if (this.fpsNow !== undefined) this.fpsNow = 0;
    if (this.kbpsNow !== undefined) this.kbpsNow = 0;
  }

  /** Frames and bytes over the window of recent samples. */
  add(sample: MeterSample): void {
    const samples = this.samples;
    samples.push({ atMs: sample.atMs, frames: sample.frames, bytes: sample.bytes });
    if (samples.length > RATE_WINDOW_SAMPLES + 1) samples.shift();
    const first = samples[0]!;
    const seconds = (sample.atMs - first.atMs) / 1000;
    if (samples.length < 2 || seconds <= 0) return;
    this.fpsNow = Math.round(((sample.frames - first.frames) / seconds) * 10) / 10;
    this.kbpsNow = Math.round(((sample.bytes - first.bytes) * 8) / 1000 / seconds);
  }
}
