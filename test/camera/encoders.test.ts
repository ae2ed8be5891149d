// Encoder selection against this machine's real GStreamer registry (x86: no Pi hardware encoder).
import pino from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { Encoders } from '../../daemon/src/camera/encoders.js';

const encoders = new Encoders(pino({ level: 'silent' }));
beforeAll(() => encoders.start());

describe('encoder selection', () => {
  it('picks x264enc here and says why v4l2h264enc is absent', () => {
    expect(encoders.choose('auto', 'cam0')).toBe('x264enc');
    const report = Object.fromEntries(encoders.report().map((s) => [s.factory, s]));
    expect(report['x264enc']).toMatchObject({ usable: true });
    expect(report['openh264enc']).toMatchObject({ usable: true });
    expect(report['v4l2h264enc']).toMatchObject({ usable: false });
    expect(report['v4l2h264enc']?.reason).toMatch(/no hardware H\.264 encoder.*Pi 5 has none/);
  });

  it('a forced encoder that is present is used', () => {
    expect(encoders.choose('openh264enc', 'cam0')).toBe('openh264enc');
  });

  it('forcing a missing encoder is a clear error naming the camera and the fix', () => {
    expect(() => encoders.choose('v4l2h264enc', 'yard')).toThrow(
      /camera yard: encoder v4l2h264enc is forced by its config but cannot be used here: no hardware H\.264 encoder/,
    );
  });
});
