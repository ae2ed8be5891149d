// A camera's fps and kbit/s come from its worker's counters over the last few reports, on the worker's
// clock; 0 once nothing flows, undefined before the first measurement.
import { describe, expect, it } from 'vitest';
import { RateMeter } from '../../daemon/src/camera/rates.js';

describe('camera rates', () => {
  it('measures over the last five reports, says 0 when nothing flows, and starts over with a new worker', () => {
    const rates = new RateMeter();
    rates.zero();
    expect([rates.fps, rates.bitrateKbps]).toEqual([undefined, undefined]);
    rates.add({ atMs: 0, frames: 0, bytes: 0 });
    expect(rates.fps).toBeUndefined();
    // 30 frames and 250 000 bytes a second, then a burst in the last second: the window evens it out.
    for (let s = 1; s <= 5; s++) rates.add({ atMs: s * 1000, frames: 30 * s, bytes: 250_000 * s });
    expect([rates.fps, rates.bitrateKbps]).toEqual([30, 2000]);
    rates.add({ atMs: 6000, frames: 30 * 5 + 60, bytes: 250_000 * 6 });
    expect(rates.fps).toBe(36);
    rates.zero();
    expect([rates.fps, rates.bitrateKbps]).toEqual([0, 0]);
    rates.restart();
    rates.add({ atMs: 100, frames: 0, bytes: 0 });
    rates.add({ atMs: 1100, frames: 15, bytes: 37_500 });
    expect([rates.fps, rates.bitrateKbps]).toEqual([15, 300]);
  });
});
