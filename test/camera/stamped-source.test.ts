// The stamped test source (source: { type: test, stamp: true }): the schema allows it on the test
// source only and off by default; the pipeline starts with the appsrc the worker feeds; the source
// pushes frames at the configured rate whose stamps read back as the push time and a running counter.
import { describe, expect, it } from 'vitest';
import { cameraChain } from '../../daemon/src/camera/pipeline.js';
import { renderPipeline } from '../../daemon/src/gst/describe.js';
import { readStamp } from '../../daemon/src/camera/stamp.js';
import { shapeFromCaps, startStampedSource, StampedSource } from '../../daemon/src/camera/stamped-feeder.js';
import { STAMPED_SOURCE_NAME } from '../../daemon/src/camera/stamped-source.js';
import { configSchema } from '../../daemon/src/config/schema.js';

function cameraWith(source: Record<string, unknown>) {
  return configSchema.parse({ cameras: [{ name: 'gate', source, width: 320, height: 240 }] });
}

describe('stamped test source', () => {
  it('is off unless asked for, and only the test source has the option', () => {
    expect(cameraWith({ type: 'test' }).cameras[0]!.source).toEqual({
      type: 'test',
      pattern: 'smpte',
      stamp: false,
    });
    expect(cameraWith({ type: 'test', stamp: true }).cameras[0]!.source).toMatchObject({ stamp: true });
    expect(
      configSchema.safeParse({ cameras: [{ name: 'gate', source: { type: 'test', stamp: 'yes' } }] }).success,
    ).toBe(false);
  });

  it('replaces videotestsrc with the appsrc that the worker feeds', () => {
    const config = cameraWith({ type: 'test', stamp: true });
    const description = renderPipeline(cameraChain(config.cameras[0]!, config.sfu, 'x264enc'));
    expect(description).toMatch(
      new RegExp(
        `^appsrc name="${STAMPED_SOURCE_NAME}" is-live=true do-timestamp=true format="time" caps="video/x-raw,format=I420,width=320,height=240,framerate=30/1" ! `,
      ),
    );
    expect(description).not.toContain('videotestsrc');
    const plain = cameraWith({ type: 'test' });
    expect(renderPipeline(cameraChain(plain.cameras[0]!, plain.sfu, 'x264enc'))).toMatch(/^videotestsrc /);
  });

  it('reads the frame shape from caps as GStreamer prints them', () => {
    expect(
      shapeFromCaps(
        'video/x-raw, format=(string)I420, width=(int)1280, height=(int)720, framerate=(fraction)30/1',
      ),
    ).toEqual({ width: 1280, height: 720, framerate: 30 });
    expect(shapeFromCaps('video/x-raw,format=I420,width=320,height=240,framerate=15/1')).toEqual({
      width: 320,
      height: 240,
      framerate: 15,
    });
    expect(shapeFromCaps('video/x-raw')).toBeUndefined();
  });

  it('leaves pipelines without the appsrc alone', () => {
    expect(startStampedSource({ findChild: () => undefined }, STAMPED_SOURCE_NAME)).toBeUndefined();
  });

  it('pushes frames at the configured rate, each stamped with its push time and the next counter', async () => {
    const pushed: Array<{ at: number; frame: Buffer }> = [];
    const source = new StampedSource(
      { push: (frame) => pushed.push({ at: Date.now(), frame: Buffer.from(frame) }) },
      { width: 320, height: 240, framerate: 50 },
    );
    const started = Date.now();
    source.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    source.stop();
    const stoppedAt = pushed.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(pushed.length).toBe(stoppedAt);
    // 50 fps for 0.5 s: about 25 frames (timers on a loaded machine run late, never early).
    expect(pushed.length).toBeGreaterThanOrEqual(15);
    expect(pushed.length).toBeLessThanOrEqual(27);
    pushed.forEach(({ at, frame }, index) => {
      expect(frame.length).toBe(320 * 240 * 1.5);
      const stamp = readStamp({ data: frame, width: 320, height: 240, format: 'I420' });
      expect(stamp?.counter).toBe(index);
      expect(stamp!.timeMs).toBeGreaterThanOrEqual(started);
      expect(stamp!.timeMs).toBeLessThanOrEqual(at);
    });
  });

  it('refuses a frame too small for the stamp', () => {
    expect(() => new StampedSource({ push: () => {} }, { width: 64, height: 64, framerate: 30 })).toThrow(
      /too small/,
    );
  });
});
