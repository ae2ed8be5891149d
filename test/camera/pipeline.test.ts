// A camera's pipeline (camera/pipeline.ts): every source, encoder and branch renders to a description
// that GStreamer's own parser accepts and runs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { embeddedDefaults } from '../../daemon/src/config/load.js';
import { cameraChain, h264Level, ssrcFor } from '../../daemon/src/camera/pipeline.js';
import { renderPipeline } from '../../daemon/src/gst/describe.js';
import { parseAndRun } from '../support/gst.js';
import { tempDir } from '../support/processes.js';

describe('pipeline descriptions', () => {
  it('renders the default camera as a pipeline GStreamer accepts and runs', () => {
    const config = embeddedDefaults();
    const camera = { ...config.cameras[0]!, width: 320, height: 240 };
    const description = renderPipeline(cameraChain(camera, config.sfu, 'x264enc'));
    expect(description).toContain('x264enc tune="zerolatency"');
    expect(description).toContain('video/x-h264,profile=(string)constrained-baseline');
    expect(description).toContain('config-interval=-1');
    // Run it for a few frames: same description, test source bounded by num-buffers.
    const bounded = description.replace('videotestsrc ', 'videotestsrc num-buffers=10 ');
    const result = parseAndRun(bounded);
    expect(result.status, result.stderr).toBe(0);
  });

  it('with a pre-roll branch, a tee feeds RTP and a leaky queue to a file per GOP; plain, RTCP and SRTP graphs run and write segments', async () => {
    const config = embeddedDefaults();
    const dir = await tempDir('outpost-preroll-graph-');
    const camera = { ...config.cameras[0]!, width: 320, height: 240, framerate: 15 };
    const variants = {
      plain: cameraChain(camera, config.sfu, 'x264enc', undefined, {
        location: join(dir, 'plain-%08d.ts'),
        segmentSeconds: 1,
      }),
      rtcp: cameraChain({ ...camera, rtp: { ...camera.rtp, rtcp: true } }, config.sfu, 'x264enc', undefined, {
        location: join(dir, 'rtcp-%08d.ts'),
        segmentSeconds: 1,
      }),
      srtp: cameraChain(
        { ...camera, rtp: { ...camera.rtp, rtcp: true } },
        config.sfu,
        'x264enc',
        { suite: 'AES_CM_128_HMAC_SHA1_80', masterKey: new Uint8Array(30).fill(7) },
        { location: join(dir, 'srtp-%08d.ts'), segmentSeconds: 1 },
      ),
    };
    for (const [name, chain] of Object.entries(variants)) {
      const description = renderPipeline(chain);
      expect(description).toContain('identity name="meter" silent=true ! tee name="split" ! rtph264pay');
      expect(description).toContain(
        'split.src_1 ! queue leaky="downstream" max-size-time=2000000000 max-size-buffers=0 max-size-bytes=0 ! h264parse config-interval=-1',
      );
      expect(description).toContain(
        `mpegtsmux name="prerollmux" ! multifilesink name="preroll" next-file="key-frame" min-keyframe-distance=0 post-messages=true location="${dir}/${name}-%08d.ts"`,
      );
      // Live for 4 s, a keyframe a second: the first segments are written. (Not to end-of-stream: with
      // RTCP, rtpbin ends only after its BYE, seconds later, and under a loaded suite that outran the
      // timeout.)
      const result = parseAndRun(description, [], 4000);
      expect(result.status, `${name}: ${result.stderr}`).toBe(0);
      expect(existsSync(join(dir, `${name}-00000001.ts`)), name).toBe(true);
    }
  });

  it('renders the Pi hardware encoder with its controls and a level that fits the stream', () => {
    const config = embeddedDefaults();
    const description = renderPipeline(
      cameraChain({ ...config.cameras[0]!, framerate: 30 }, config.sfu, 'v4l2h264enc'),
    );
    expect(description).toContain('format=(string)NV12');
    expect(description).toContain(
      'v4l2h264enc extra-controls="controls,repeat_sequence_header=1,video_bitrate=2000000,h264_i_frame_period=30"',
    );
    expect(description).toContain('video/x-h264,profile=(string)constrained-baseline,level=(string)3.1');
    expect(h264Level(640, 480, 30)).toBe('3');
    expect(h264Level(1280, 720, 30)).toBe('3.1');
    expect(h264Level(1920, 1080, 30)).toBe('4');
  });

  it('with rtp.rtcp the RTCP ends of the session are on loopback, for the relay of the worker, and it plays', () => {
    const config = embeddedDefaults();
    const camera = {
      ...config.cameras[0]!,
      width: 320,
      height: 240,
      rtp: { ...config.cameras[0]!.rtp, rtcp: true },
    };
    const description = renderPipeline(cameraChain(camera, config.sfu, 'x264enc'));
    expect(description).toContain(
      'rtpbin.send_rtcp_src_0 ! udpsink name="rtcpout" host="127.0.0.1" port=9 sync=false async=false',
    );
    expect(description).toContain(
      'udpsrc name="rtcpin" address="127.0.0.1" port=0 ! application/x-rtcp ! rtpbin.recv_rtcp_sink_0',
    );
    // A live pipeline without an end (the RTCP udpsrc never ends): playing without an error is the
    // pass. udpsrc reports the port the kernel gave it, which is what the worker's relay reads.
    const result = parseAndRun(description, ['rtcpin.port'], 1500);
    expect(result.status, result.stderr).toBe(0);
    expect(Number(/rtcpin\.port=(\d+)/.exec(result.stdout)?.[1])).toBeGreaterThan(0);
  });

  it('derives a stable non-zero SSRC from the camera name', () => {
    expect(ssrcFor('cam0')).toBe(ssrcFor('cam0'));
    expect(ssrcFor('cam0')).not.toBe(ssrcFor('cam1'));
    expect(ssrcFor('cam0')).toBeGreaterThan(0);
  });
});
