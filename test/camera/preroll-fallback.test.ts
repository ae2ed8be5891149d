// A pre-roll branch that fails is left out for the retry period, then tried again; an error anywhere
// else in the pipeline does not touch it. The reason carries the system's words from GStreamer's debug.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PreRollFallback, preRollFailure } from '../../daemon/src/camera/preroll-fallback.js';

afterEach(() => vi.useRealTimers());

describe('pre-roll fallback', () => {
  it('leaves the branch out after its own error, for the retry period, then lets it run again', () => {
    vi.useFakeTimers();
    const fallback = new PreRollFallback(60_000);
    expect(
      fallback.failed('/GstPipeline:pipeline0/GstX264Enc:x264enc0', 'encoder error', undefined),
    ).toBeUndefined();
    expect(fallback.isOff()).toBe(false);
    const reason = fallback.failed(
      '/GstPipeline:pipeline0/GstMultiFileSink:preroll',
      'Error while writing to file.',
      'gstmultifilesink.c(640): …\nNo space left on device',
    );
    expect(reason).toBe('Error while writing to file. (No space left on device)');
    expect([fallback.isOff(), fallback.reason()]).toEqual([true, reason]);
    // A second error while it is off changes nothing.
    expect(
      fallback.failed('/GstPipeline:pipeline0/MpegTsMux:prerollmux', 'other', undefined),
    ).toBeUndefined();
    vi.advanceTimersByTime(59_000);
    expect(fallback.retryIfDue()).toBeUndefined();
    expect(fallback.msUntilRetry()).toBeCloseTo(1000, -1);
    vi.advanceTimersByTime(1000);
    expect(fallback.retryIfDue()).toBe(reason);
    expect([fallback.isOff(), fallback.reason(), fallback.msUntilRetry()]).toEqual([false, undefined, 0]);
  });

  it("keeps GStreamer's message alone when the debug text adds nothing", () => {
    expect(preRollFailure('Could not open file.', undefined)).toBe('Could not open file.');
    expect(preRollFailure('No space left on device', 'x\nNo space left on device')).toBe(
      'No space left on device',
    );
  });
});
