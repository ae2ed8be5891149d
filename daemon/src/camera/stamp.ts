// The latency stamp: a capture time (ms since the epoch) and a frame counter written into a video frame
// as big black and white blocks, and read back from a decoded frame. The stamped test source writes it
// before encoding (stamped-feeder.ts); bench:latency reads it after decoding, in GStreamer and in the
// browser. Nothing here touches Node APIs: the viewer page imports the compiled module as it is.
//
// Layout: 8 × 10 cells of 16 × 16 luma pixels at the frame's top-left corner (128 × 160 pixels), row
// by row, one bit per cell, white = 1. Cells sit on the H.264 macroblock grid, so each is one flat
// macroblock that survives even a starved rate control (a flat block costs one DC coefficient), and
// the reader averages only each cell's inner 8 × 8 pixels, away from deblocking at the edges.
//
//   bits  0–3   start mark 1011 (a frame without a stamp almost never shows it)
//   bits  4–47  capture time, ms since the epoch (44 bits: until the year 2527)
//   bits 48–63  frame counter, mod 65536 (lost frames are counted, not guessed from gaps)
//   bits 64–79  CRC-16/CCITT-FALSE over time and counter: a misread cell rejects the frame

export const STAMP_CELL = 16;
export const STAMP_COLUMNS = 8;
export const STAMP_ROWS = 10;
/** The stamp's size in pixels, from the frame's top-left corner. */
export const STAMP_WIDTH = STAMP_CELL * STAMP_COLUMNS;
export const STAMP_HEIGHT = STAMP_CELL * STAMP_ROWS;

const MARK = [1, 0, 1, 1] as const;
const TIME_BITS = 44;
const COUNTER_BITS = 16;
const CRC_BITS = 16;
const BITS = MARK.length + TIME_BITS + COUNTER_BITS + CRC_BITS;
/** BT.601 limited range: what an encoder and decoder expect for black and white. */
const BLACK = 16;
const WHITE = 235;
/** Mid-grey between BLACK and WHITE. */
const THRESHOLD = 128;
const SAMPLE_INSET = 4;

export interface Stamp {
  /** Capture time, ms since the epoch (whole ms). */
  timeMs: number;
  /** Frame counter, wraps at 65536. */
  counter: number;
}

/** A decoded picture, or just its top-left STAMP_WIDTH × STAMP_HEIGHT: I420 (its Y plane) or RGBA. */
export interface Picture {
  data: ArrayLike<number>;
  width: number;
  height: number;
  format: 'I420' | 'GRAY8' | 'RGBA';
  /** Bytes per row of the Y plane (I420/GRAY8) or of the RGBA rows; default width (× 4 for RGBA). */
  stride?: number;
}

export function stampFits(width: number, height: number): boolean {
  return width >= STAMP_WIDTH && height >= STAMP_HEIGHT && width % 2 === 0 && height % 2 === 0;
}

/** The 80 bits of a stamp, mark first. */
export function stampBits(stamp: Stamp): number[] {
  const timeMs = Math.floor(stamp.timeMs);
  if (!Number.isSafeInteger(timeMs) || timeMs < 0 || timeMs >= 2 ** TIME_BITS)
    throw new RangeError(`stamp time ${stamp.timeMs} does not fit in ${TIME_BITS} bits`);
  const counter = stamp.counter & 0xffff;
  const payload = [...toBits(timeMs, TIME_BITS), ...toBits(counter, COUNTER_BITS)];
  return [...MARK, ...payload, ...toBits(crc16(payload), CRC_BITS)];
}

/**
 * Write `stamp` into an I420 frame (Y plane, then U and V at half resolution) in place: the cells in
 * the Y plane, neutral chroma under them so that they are black and white, not tinted.
 */
export function writeStamp(frame: Uint8Array, width: number, height: number, stamp: Stamp): void {
  if (!stampFits(width, height)) throw new RangeError(`a ${width}×${height} frame cannot hold a stamp`);
  if (frame.length < (width * height * 3) / 2) throw new RangeError('frame is smaller than I420 needs');
  const bits = stampBits(stamp);
  for (let cell = 0; cell < BITS; cell++) {
    const x0 = (cell % STAMP_COLUMNS) * STAMP_CELL;
    const y0 = Math.floor(cell / STAMP_COLUMNS) * STAMP_CELL;
    const value = bits[cell] === 1 ? WHITE : BLACK;
    for (let y = y0; y < y0 + STAMP_CELL; y++) frame.fill(value, y * width + x0, y * width + x0 + STAMP_CELL);
  }
  const chromaWidth = width / 2;
  const uPlane = width * height;
  const vPlane = uPlane + chromaWidth * (height / 2);
  for (let y = 0; y < STAMP_HEIGHT / 2; y++) {
    frame.fill(128, uPlane + y * chromaWidth, uPlane + y * chromaWidth + STAMP_WIDTH / 2);
    frame.fill(128, vPlane + y * chromaWidth, vPlane + y * chromaWidth + STAMP_WIDTH / 2);
  }
}

/** Read the stamp from a decoded picture; undefined when there is none or it was misread. */
export function readStamp(picture: Picture): Stamp | undefined {
  if (picture.width < STAMP_WIDTH || picture.height < STAMP_HEIGHT) return undefined;
  const rgba = picture.format === 'RGBA';
  const stride = picture.stride ?? (rgba ? picture.width * 4 : picture.width);
  const { data } = picture;
  const bits: number[] = [];
  for (let cell = 0; cell < BITS; cell++) {
    const x0 = (cell % STAMP_COLUMNS) * STAMP_CELL + SAMPLE_INSET;
    const y0 = Math.floor(cell / STAMP_COLUMNS) * STAMP_CELL + SAMPLE_INSET;
    let sum = 0;
    let count = 0;
    for (let y = y0; y < y0 + STAMP_CELL - 2 * SAMPLE_INSET; y++) {
      for (let x = x0; x < x0 + STAMP_CELL - 2 * SAMPLE_INSET; x++) {
        if (rgba) {
          const i = y * stride + x * 4;
          // BT.601 luma from full-range RGB, in integer weights (77 + 150 + 29 = 256).
          sum += (77 * (data[i] ?? 0) + 150 * (data[i + 1] ?? 0) + 29 * (data[i + 2] ?? 0)) / 256;
        } else {
          sum += data[y * stride + x] ?? 0;
        }
        count++;
      }
    }
    bits.push(sum / count >= THRESHOLD ? 1 : 0);
  }
  for (let i = 0; i < MARK.length; i++) if (bits[i] !== MARK[i]) return undefined;
  const payload = bits.slice(MARK.length, MARK.length + TIME_BITS + COUNTER_BITS);
  const crc = fromBits(bits.slice(MARK.length + TIME_BITS + COUNTER_BITS));
  if (crc !== crc16(payload)) return undefined;
  return {
    timeMs: fromBits(payload.slice(0, TIME_BITS)),
    counter: fromBits(payload.slice(TIME_BITS)),
  };
}

/** Most significant bit first. Arithmetic, not bitwise: the time is wider than 32 bits. */
function toBits(value: number, count: number): number[] {
  const bits: number[] = [];
  for (let i = count - 1; i >= 0; i--) bits.push(Math.floor(value / 2 ** i) % 2);
  return bits;
}

function fromBits(bits: readonly number[]): number {
  let value = 0;
  for (const bit of bits) value = value * 2 + bit;
  return value;
}

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xffff), bit by bit over the payload bits. */
function crc16(bits: readonly number[]): number {
  let crc = 0xffff;
  for (const bit of bits) {
    const top = (crc >> 15) & 1;
    crc = (crc << 1) & 0xffff;
    if ((top ^ bit) === 1) crc ^= 0x1021;
  }
  return crc;
}
