// Pipelines are data: a camera's GStreamer pipeline is a typed list of elements and caps, turned into a
// gst-launch description by `renderPipeline`, the one function that quotes and escapes. Nothing else
// concatenates strings into a pipeline, so a hostile config value (a device path with `!` in it, say)
// can only ever be a property value, never a new element.
import { SRTP_SUITES, ssrcFor, type CameraConfig, type Config, type SrtpSuite } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import type { EncoderName } from './encoders.js';
import type { CameraSource } from './sources.js';
import { RTCP_RELAY, type RtcpRelayPlan } from './rtcp-relay.js';
import { stampedSourceLinks } from './stamped-source.js';

export { ssrcFor } from '../config/schema.js';

export interface Fraction {
  num: number;
  den: number;
}
/**
 * A GstBuffer value (srtpenc's `key`, srtpdec's `srtp-key` caps field). GStreamer deserialises a
 * buffer from a bare hex string (gst_value_deserialize_buffer), so it renders as lowercase hex: only
 * [0-9a-f], nothing to quote. It is also the one kind of value that is secret: a redacted render
 * (for logs) shows `<redacted>` instead.
 */
export interface Bytes {
  bytes: Uint8Array;
}
/** A string that is a secret (an RTSP camera's password): quoted as usual, `<redacted>` in a redacted render. */
export interface Secret {
  secret: string;
}
export type Value = string | number | boolean | Fraction | Bytes | Secret;

export interface RenderOptions {
  /** Render Bytes and Secret values as `<redacted>`: for log lines, never for GStreamer. */
  redact?: boolean;
}

export interface ElementLink {
  kind: 'element';
  factory: string;
  name?: string;
  props?: Readonly<Record<string, Value | undefined>>;
}

export interface CapsLink {
  kind: 'caps';
  /** e.g. `video/x-raw` */
  media: string;
  fields: Readonly<Record<string, Value>>;
}

/** A named element's pad (`rtpbin.send_rtp_src_0`): where chains of a non-linear pipeline meet. */
export interface PadLink {
  kind: 'pad';
  element: string;
  pad: string;
}

export type Link = ElementLink | CapsLink | PadLink;

/** One linear chain, or several chains joined through named elements' pads. */
export type Graph = readonly Link[] | readonly (readonly Link[])[];

const IDENTIFIER = /^[a-z][a-z0-9_-]*$/i;
const MEDIA_TYPE = /^[a-z]+\/[a-z0-9.+-]+$/i;
/** Caps string values are short tokens (NV12, constrained-baseline); anything else is refused. */
const CAPS_TOKEN = /^[A-Za-z0-9_.+-]+$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

export function element(factory: string, props?: ElementLink['props'], name?: string): ElementLink {
  return name === undefined ? { kind: 'element', factory, props } : { kind: 'element', factory, props, name };
}

export function caps(media: string, fields: CapsLink['fields']): CapsLink {
  return { kind: 'caps', media, fields };
}

export function pad(elementName: string, padName: string): PadLink {
  return { kind: 'pad', element: elementName, pad: padName };
}

/** Element and pad names in a pad reference are written bare, so they are held to this. */
const PAD_PART = /^[a-z][a-z0-9_]*$/i;

/** Render a linear chain as a gst-launch description. Throws PIPELINE_INVALID on anything unsafe. */
export function renderPipeline(graph: Graph, options: RenderOptions = {}): string {
  if (graph.length === 0) throw invalid('a pipeline needs at least one element');
  const chains = isChainList(graph) ? graph : [graph];
  return chains.map((chain) => renderChain(chain, options)).join(' ');
}

function isChainList(graph: Graph): graph is readonly (readonly Link[])[] {
  return Array.isArray(graph[0]);
}

function renderChain(chain: readonly Link[], options: RenderOptions): string {
  if (chain.length === 0) throw invalid('a pipeline needs at least one element');
  return chain
    .map((link, index) => {
      if (link.kind === 'element') return renderElement(link, options);
      if (link.kind === 'caps') return renderCaps(link, options);
      // A pad reference can only start or end a chain: anywhere else gst-launch would read it as a link
      // through an element, which is never what we mean.
      if (index !== 0 && index !== chain.length - 1)
        throw invalid('a pad reference must start or end a chain');
      if (!PAD_PART.test(link.element) || !PAD_PART.test(link.pad))
        throw invalid(`bad pad reference ${JSON.stringify(`${link.element}.${link.pad}`)}`);
      return `${link.element}.${link.pad}`;
    })
    .join(' ! ');
}

function renderElement(link: ElementLink, options: RenderOptions): string {
  if (!IDENTIFIER.test(link.factory))
    throw invalid(`bad element factory name ${JSON.stringify(link.factory)}`);
  const parts = [link.factory];
  if (link.name !== undefined) parts.push(`name=${quote(link.name)}`);
  for (const [key, value] of Object.entries(link.props ?? {})) {
    if (value === undefined) continue;
    if (!IDENTIFIER.test(key)) throw invalid(`bad property name ${JSON.stringify(key)} on ${link.factory}`);
    parts.push(`${key}=${renderValue(value, `${link.factory}.${key}`, options)}`);
  }
  return parts.join(' ');
}

function renderCaps(link: CapsLink, options: RenderOptions): string {
  if (!MEDIA_TYPE.test(link.media)) throw invalid(`bad caps media type ${JSON.stringify(link.media)}`);
  const fields = Object.entries(link.fields).map(([key, value]) => {
    if (!IDENTIFIER.test(key)) throw invalid(`bad caps field name ${JSON.stringify(key)}`);
    if (typeof value === 'string') {
      if (!CAPS_TOKEN.test(value))
        throw invalid(`caps field ${key} has unsafe value ${JSON.stringify(value)}`);
      return `${key}=(string)${value}`;
    }
    if (typeof value === 'number') return `${key}=(int)${integer(value, key)}`;
    if (typeof value === 'boolean') return `${key}=(boolean)${value}`;
    if ('bytes' in value) return `${key}=(buffer)${hex(value, key, options)}`;
    if ('secret' in value) throw invalid(`caps field ${key} cannot hold a secret`);
    return `${key}=(fraction)${integer(value.num, key)}/${integer(value.den, key)}`;
  });
  return [link.media, ...fields].join(',');
}

function renderValue(value: Value, where: string, options: RenderOptions): string {
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`${where} is not a finite number`);
    return String(value);
  }
  if (typeof value === 'object') {
    if ('bytes' in value) return hex(value, where, options);
    if ('secret' in value) {
      if (CONTROL.test(value.secret) || value.secret.endsWith('\\'))
        // Never repeat a secret in an error message.
        throw invalid(`${where} contains a control character or ends with a backslash; change it`);
      return options.redact ? '<redacted>' : quote(value.secret);
    }
    return `${integer(value.num, where)}/${integer(value.den, where)}`;
  }
  return quote(value);
}

function hex(value: Bytes, where: string, options: RenderOptions): string {
  if (!(value.bytes instanceof Uint8Array) || value.bytes.length === 0)
    throw invalid(`${where} needs at least one byte`);
  return options.redact ? '<redacted>' : Buffer.from(value.bytes).toString('hex');
}

/**
 * gst-launch unescapes `\x` to `x`, so escaping `\` and `"` keeps a value's characters. But its lexer
 * (parse.l, 1.22) reads a double-quoted string as `"([^"]|\\")*"` with flex's longest match: a `\`
 * right before the closing quote can also be read as an escaped quote, and the string then runs on to
 * the next `"` in the description, so the rest is tokenised anew (a user name ending in `\` followed by
 * a password holding ` ! filesink …` would inject an element). A value ending in a backslash is
 * therefore refused, like control characters (a newline ends a token).
 */
export function quote(value: string): string {
  if (CONTROL.test(value)) throw invalid(`value ${JSON.stringify(value)} contains a control character`);
  if (value.endsWith('\\'))
    throw invalid(`value ${JSON.stringify(value)} ends with a backslash, which GStreamer cannot quote`);
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function integer(value: number, where: string): number {
  if (!Number.isSafeInteger(value)) throw invalid(`${where} must be a whole number, got ${value}`);
  return value;
}

function invalid(message: string): OutpostError {
  return new OutpostError('PIPELINE_INVALID', `pipeline: ${message}`, {
    hint: 'this is a bug or a config value GStreamer cannot take; check the camera settings',
  });
}

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
 * Why multifilesink and not splitmuxsink: splitmuxsink (1.22) collects a whole GOP before it writes it
 * and closes a file only when the next GOP has been collected, so it reports a GOP one keyframe
 * interval after its end (its fragment-opened message comes before the GOP's data is written, with no
 * end time). multifilesink `next-file=key-frame` closes a file (fclose: every byte is in it) when the
 * next keyframe reaches it and then posts `GstMultiFileSink` with that keyframe's running time: a GOP
 * is reported complete ~30 ms after its end. `min-keyframe-distance=0`: a new file at every keyframe
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
    if (encoder === undefined) throw invalid(`camera ${camera.name} needs an encoder`);
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
        // `stamp`: the latency-measurement source (stamped-source.ts) writes the capture time into frames.
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
