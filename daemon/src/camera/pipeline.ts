// A camera's pipeline as data (gst/describe.ts renders it): capture → H.264 → meter → tee → RTP (and
// optional RTCP and SRTP) → UDP to the SFU, plus the pre-roll branch. Config values only ever become
// property values here; renderPipeline quotes them.
import { SRTP_SUITES, ssrcFor, type CameraConfig, type Config, type SrtpSuite } from '../config/schema.js';
import { caps, element, invalidPipeline, pad, type ElementLink, type Link } from '../gst/describe.js';
import type { EncoderName } from './encoders.js';
import type { CameraSource } from './sources.js';
import { RTCP_RELAY, type RtcpRelayPlan } from './rtcp-relay.js';
import { stampedSourceLinks } from './stamped-source.js';

export { ssrcFor } from '../config/schema.js';

/** Names of elements the camera supervisor reads back (packet counter on the payloader). */
export const PAYLOADER_NAME = 'pay';
/**
 * An `identity` right after the encoder (or the RTSP depayloader): its `stats` property counts the
 * encoded frames and bytes, so fps and bitrate are measured by GStreamer, not by JavaScript per frame.
 */
export const METER_NAME = 'meter';

function meter(): ElementLink {
  return element('identity', { silent: true }, METER_NAME);
}

/** The tee that splits the encoded H.264 between RTP and the pre-roll branch. */
export const TEE_NAME = 'split';
/** The pre-roll branch's file sink: its messages say where each segment is and when it ends. */
export const PREROLL_SINK_NAME = 'preroll';
/** The pre-roll branch's MPEG-TS muxer (its errors, like the sink's, are the branch's). */
export const PREROLL_MUX_NAME = 'prerollmux';

/** Where a camera's pre-roll segments go (clips/preroll.ts owns the folder and prunes it). */
export interface PreRollBranch {
  /** A printf pattern with one `%d` for the segment index, e.g. `/run/outpost/preroll/cam0/3-%08d.ts`. */
  location: string;
  /**
   * The camera's keyframe interval in seconds: a segment is one GOP (a new file at every keyframe).
   * The branch's queue holds two of them.
   */
  segmentSeconds: number;
}

/**
 * The pre-roll branch: the tee's second pad → a leaky queue → h264parse (SPS/PPS before every IDR, so
 * every segment decodes alone) → one MPEG-TS stream (a segment is readable even if the process dies
 * while writing it, and segments concatenate) cut into a file per GOP. The queue drops the oldest
 * buffers instead of blocking when the branch falls behind (a full disk, a stalled filesystem): the tee
 * then never waits on it, and the RTP branch, which runs in the encoder's own thread, never stalls
 * because of it.
 *
 * multifilesink `next-file=key-frame` closes a file (fclose: every byte is in it) when the next keyframe
 * reaches it and posts `GstMultiFileSink` with that keyframe's running time: a GOP is reported ~30 ms
 * after its end (splitmuxsink: a GOP later; docs/decisions/pre-roll-multifilesink.md).
 * `min-keyframe-distance=0`: a new file at every keyframe
 * (the default, 10 s, would put ten GOPs in a file). mpegtsmux marks only the first packet after a
 * keyframe as a key unit and sends PAT/PMT before it, so each file is one GOP that starts with
 * PAT/PMT and the keyframe (docs/clips.md).
 */
function preRollLinks(branch: PreRollBranch): Link[] {
  const segmentNs = Math.round(branch.segmentSeconds * 1e9);
  return [
    pad(TEE_NAME, 'src_1'),
    element('queue', {
      leaky: 'downstream',
      'max-size-time': Math.max(2e9, 2 * segmentNs),
      'max-size-buffers': 0,
      'max-size-bytes': 0,
    }),
    element('h264parse', { 'config-interval': -1 }),
    caps('video/x-h264', { 'stream-format': 'byte-stream', alignment: 'au' }),
    element('mpegtsmux', {}, PREROLL_MUX_NAME),
    element(
      'multifilesink',
      {
        'next-file': 'key-frame',
        'min-keyframe-distance': 0,
        'post-messages': true,
        location: branch.location,
      },
      PREROLL_SINK_NAME,
    ),
  ];
}

/** An SRTP master key (key + salt) ready for srtpenc, and the suite it is for. */
export interface SrtpKey {
  suite: SrtpSuite;
  masterKey: Uint8Array;
}

/**
 * The chain for one camera: capture → H.264 (constrained baseline, so every browser decodes it) → RTP
 * (SPS/PPS with every keyframe) → optional SRTP → UDP to the SFU. No per-frame JavaScript. An `rtsp`
 * camera's H.264 is depayloaded and payloaded again, never decoded or re-encoded: `encoder` is
 * undefined for it (and required for every other source).
 */
export function cameraChain(
  camera: CameraConfig,
  sfu: Config['sfu'],
  encoder: EncoderName | undefined,
  srtp?: SrtpKey,
  preroll?: PreRollBranch,
): Link[] | Link[][] {
  let h264: Link[];
  if (camera.source.type === 'rtsp') {
    h264 = rtspLinks(camera.source);
  } else {
    if (encoder === undefined) throw invalidPipeline(`camera ${camera.name} needs an encoder`);
    const keyframeFrames = Math.max(1, Math.round(camera.framerate * camera.keyframeIntervalSeconds));
    h264 = [
      ...rawCaptureLinks(camera, camera.source, encoder === 'v4l2h264enc' ? 'NV12' : 'I420'),
      ...encoderLinks(camera, encoder, keyframeFrames),
    ];
  }
  const capture: Link[] = [
    ...h264,
    meter(),
    // The tee's first pad feeds the payloader in the encoder's thread, as without a tee.
    ...(preroll ? [element('tee', {}, TEE_NAME)] : []),
    element(
      'rtph264pay',
      {
        pt: camera.rtp.payloadType,
        ssrc: camera.rtp.ssrc ?? ssrcFor(camera.name),
        // -1: send SPS/PPS with every IDR frame, so a receiver can start at any keyframe.
        'config-interval': -1,
      },
      PAYLOADER_NAME,
    ),
  ];
  const rtpSink = element('udpsink', { host: sfu.host, port: camera.rtp.port, sync: false, async: false });
  const branches: Link[][] = preroll ? [preRollLinks(preroll)] : [];
  if (!camera.rtp.rtcp) {
    const rtp = [...capture, ...(srtp ? [srtpEncoder(srtp)] : []), rtpSink];
    return preroll ? [rtp, ...branches] : rtp;
  }

  // RTCP both ways (RFC 3550 §6): rtpbin's session sends sender reports (NTP ↔ RTP timestamp, packet and
  // octet counts) and takes the SFU's RTCP back; a PLI or FIR for our SSRC becomes an upstream
  // GstForceKeyUnit event, which the encoder answers with an IDR frame. Janus latches onto the address
  // its RTCP port hears from and sends its keyframe requests there, so the reports must leave from the
  // socket that listens: a launch description cannot give a udpsrc and a udpsink one socket, so both
  // ends stay on loopback and the worker's RTCP relay (rtcp-relay.ts) joins them to the SFU through one
  // socket of its own. With SRTP one srtpenc protects RTP and RTCP (SRTCP, same master key); Janus
  // 1.1.2 sends its keyframe requests as plain RTCP (its streaming plugin never protects RTCP), so
  // they reach the session as they are, without srtpdec.
  const session: Link[][] = [
    [element('rtpbin', {}, 'rtpbin')],
    [...capture, pad('rtpbin', 'send_rtp_sink_0')],
    [
      // port 0: the kernel picks one; the worker reads it back once the pipeline plays.
      element('udpsrc', { address: '127.0.0.1', port: 0 }, RTCP_RELAY.in),
      caps('application/x-rtcp', {}),
      pad('rtpbin', 'recv_rtcp_sink_0'),
    ],
  ];
  // The worker sets `port` to its relay socket before the pipeline plays; 9 (discard) until then.
  const rtcpSink = element(
    'udpsink',
    { host: '127.0.0.1', port: 9, sync: false, async: false },
    RTCP_RELAY.out,
  );
  if (!srtp) {
    return [
      ...session,
      [pad('rtpbin', 'send_rtp_src_0'), rtpSink],
      [pad('rtpbin', 'send_rtcp_src_0'), rtcpSink],
      ...branches,
    ];
  }
  return [
    ...session,
    ...branches,
    [{ ...srtpEncoder(srtp), name: 'srtp' }],
    [pad('rtpbin', 'send_rtp_src_0'), pad('srtp', 'rtp_sink_0')],
    [pad('srtp', 'rtp_src_0'), rtpSink],
    [pad('rtpbin', 'send_rtcp_src_0'), pad('srtp', 'rtcp_sink_0')],
    [pad('srtp', 'rtcp_src_0'), rtcpSink],
  ];
}

/** What the worker's RTCP relay needs for this camera; undefined when its pipeline has no RTCP. */
export function rtcpRelayPlan(camera: CameraConfig, sfu: Config['sfu']): RtcpRelayPlan | undefined {
  return camera.rtp.rtcp ? { sfuHost: sfu.host, sfuPort: camera.rtp.port + 1 } : undefined;
}

/**
 * Raw frames in the encoder's format (the Pi encoder wants NV12; the software encoders take I420).
 * videoconvert is a no-op when the camera already sends that format.
 */
function rawCaptureLinks(
  camera: CameraConfig,
  source: Exclude<CameraSource, { type: 'rtsp' }>,
  format: 'NV12' | 'I420',
): Link[] {
  const size = { width: camera.width, height: camera.height, framerate: { num: camera.framerate, den: 1 } };
  switch (source.type) {
    case 'test':
      return [
        // `stamp`: the latency-measurement source (stamped-source.ts; the worker's stamped-feeder.ts writes
        // the capture time into frames).
        ...(source.stamp
          ? stampedSourceLinks(camera, format)
          : [element('videotestsrc', { 'is-live': true, pattern: source.pattern }, 'src')]),
        caps('video/x-raw', { format, ...size }),
      ];
    case 'libcamera':
      // libcamera's ISP delivers NV12/I420 at the asked size itself: nothing to convert.
      return [
        element('libcamerasrc', { 'camera-name': source.cameraName }, 'src'),
        caps('video/x-raw', { format, ...size }),
      ];
    case 'v4l2':
      return [
        element('v4l2src', { device: source.device }, 'src'),
        ...(source.format === 'mjpeg'
          ? // Decoding the camera's own MJPEG is the only way to get frames from such a camera.
            [caps('image/jpeg', size), element('jpegdec')]
          : [caps('video/x-raw', { format: 'YUY2', ...size })]),
        element('videoconvert'),
        caps('video/x-raw', { format }),
      ];
  }
}

/**
 * An IP camera's H.264, passed through: RTP in → H.264 access units (SPS/PPS inserted before every
 * IDR, so a viewer can start at any keyframe) → our payloader. No decoder, no encoder.
 */
function rtspLinks(source: Extract<CameraSource, { type: 'rtsp' }>): Link[] {
  return [
    element(
      'rtspsrc',
      {
        location: source.url,
        'user-id': source.username,
        'user-pw': source.password === undefined ? undefined : { secret: source.password },
        latency: source.latencyMs,
        protocols: source.transport === 'auto' ? undefined : source.transport,
      },
      'src',
    ),
    // Only the video stream links here; an audio stream stays unlinked (rtspsrc carries on).
    caps('application/x-rtp', { media: 'video', 'encoding-name': 'H264' }),
    element('rtph264depay'),
    element('h264parse', { 'config-interval': -1 }),
    // One buffer per frame, so the meter counts frames.
    caps('video/x-h264', { 'stream-format': 'byte-stream', alignment: 'au' }),
  ];
}

/**
 * srtpenc protects RTP and RTCP with one master key. AES-GCM is an AEAD: its tag is the
 * authentication, so the separate HMAC is off (`null`), as in RFC 7714.
 */
function srtpEncoder(srtp: SrtpKey): ElementLink {
  const { cipher, auth } = SRTP_SUITES[srtp.suite];
  return element('srtpenc', {
    key: { bytes: srtp.masterKey },
    'rtp-cipher': cipher,
    'rtp-auth': auth,
    'rtcp-cipher': cipher,
    'rtcp-auth': auth,
  });
}

function encoderLinks(camera: CameraConfig, encoder: EncoderName, keyframeFrames: number): Link[] {
  switch (encoder) {
    case 'x264enc':
      return [
        element('x264enc', {
          // zerolatency: no lookahead, no B-frames, sliced threads: a frame leaves as soon as it is coded.
          tune: 'zerolatency',
          'speed-preset': camera.x264SpeedPreset,
          bitrate: camera.bitrateKbps,
          'key-int-max': keyframeFrames,
        }),
        caps('video/x-h264', { profile: 'constrained-baseline' }),
      ];
    case 'openh264enc':
      return [
        element('openh264enc', {
          bitrate: camera.bitrateKbps * 1000,
          'gop-size': keyframeFrames,
          'rate-control': 'bitrate',
          complexity: 'low',
          'usage-type': 'camera',
        }),
        caps('video/x-h264', { profile: 'constrained-baseline' }),
      ];
    case 'v4l2h264enc':
      return [
        // bcm2835-codec takes bitrate and keyframe period only through extra-controls, and some kernels
        // ignore a control silently: the supervisor's measured bitrate is the truth, not this request.
        element('v4l2h264enc', {
          'extra-controls': `controls,repeat_sequence_header=1,video_bitrate=${camera.bitrateKbps * 1000},h264_i_frame_period=${keyframeFrames}`,
        }),
        // The driver refuses to start unless the level fits resolution and rate.
        caps('video/x-h264', {
          profile: 'constrained-baseline',
          level: h264Level(camera.width, camera.height, camera.framerate),
        }),
        element('h264parse'),
      ];
  }
}

/** H.264 levels (ITU-T H.264 Table A-1): max macroblocks per second and per frame. */
const LEVELS: ReadonlyArray<[level: string, mbPerSecond: number, mbPerFrame: number]> = [
  ['3', 40_500, 1620],
  ['3.1', 108_000, 3600],
  ['3.2', 216_000, 5120],
  ['4', 245_760, 8192],
  ['4.2', 522_240, 8704],
];

/** The lowest level that fits; the Pi encoder is specified up to level 4 (1080p30). */
export function h264Level(width: number, height: number, framerate: number): string {
  const perFrame = Math.ceil(width / 16) * Math.ceil(height / 16);
  const fit = LEVELS.find(
    ([, perSecond, maxFrame]) => perFrame <= maxFrame && perFrame * framerate <= perSecond,
  );
  return fit?.[0] ?? '4.2';
}
