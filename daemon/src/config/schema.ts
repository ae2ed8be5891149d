// The one configuration schema. Every default lives here, the TypeScript type is inferred from it, and
// unknown keys are errors (strict objects), so a typo in /etc/outpost/outpost.yaml is reported instead
// of silently ignored. docs/configuration.md documents the same keys; keep both in step.
import { z } from 'zod';

/** Names that become MQTT topic segments and log fields: short, lowercase, no separators. */
const name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, {
  error:
    'use 1–32 lowercase letters, digits or "-", starting with a letter or digit (it becomes a topic segment)',
});

const port = z
  .int({ error: 'a port is a whole number' })
  .min(1, { error: 'a port is 1–65535' })
  .max(65535, { error: 'a port is 1–65535' });

/**
 * Plain (unencrypted) MQTT is allowed on loopback only: LAN listeners are TLS with the site CA
 * (DESIGN.md, security model), which arrives with provisioning.
 */
const loopbackHost = z.enum(['127.0.0.1', '::1', 'localhost'], {
  error:
    'plain MQTT listens on loopback only (127.0.0.1, ::1 or localhost); LAN clients use the TLS listener',
});

/** An IPv4/IPv6 literal or a DNS-style host name (resolved on the site LAN, never public DNS). */
const host = z.union([z.ipv4(), z.ipv6(), z.hostname()], {
  error: 'give an IP address or a host name, e.g. 192.168.10.2 or sfu.site.lan',
});

const testSource = z.strictObject({
  type: z.literal('test'),
  /** videotestsrc pattern; `smpte` shows colour bars, `ball` shows motion. */
  pattern: z.enum(['smpte', 'ball', 'snow', 'black', 'white', 'gradient']).default('smpte'),
});

const cameraSource = z.discriminatedUnion('type', [testSource], {
  error: 'source.type must be one of: test',
});

const camera = z.strictObject({
  name,
  source: cameraSource.prefault({ type: 'test' }),
  width: z.int().min(16).max(4096).default(1280),
  height: z.int().min(16).max(4096).default(720),
  framerate: z.int().min(1).max(120).default(30),
  bitrateKbps: z.int().min(64).max(50_000).default(2000),
  /** Seconds between keyframes: a new viewer waits at most this long for a picture. */
  keyframeIntervalSeconds: z.number().min(0.1).max(10).default(1),
  /** `auto` picks the best usable: v4l2h264enc (Pi hardware), then x264enc, then openh264enc. */
  encoder: z
    .enum(['auto', 'v4l2h264enc', 'x264enc', 'openh264enc'], {
      error: 'encoder must be one of: auto, v4l2h264enc, x264enc, openh264enc',
    })
    .default('auto'),
  /** x264enc only: faster presets cost bitrate efficiency, not latency (tune=zerolatency is always on). */
  x264SpeedPreset: z
    .enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium'])
    .default('ultrafast'),
  rtp: z
    .strictObject({
      /** UDP port at the SFU host that receives this camera's RTP. */
      port: port.default(5004),
      payloadType: z.int().min(96, { error: 'dynamic RTP payload types are 96–127' }).max(127).default(96),
      /** Fixed SSRC so the SFU mountpoint can expect it; derived from the camera name when absent. */
      ssrc: z.int().min(1).max(0xffff_ffff).optional(),
    })
    .prefault({}),
});

/** bcm2835-codec (v4l2h264enc on Pi 3/4/Zero 2/CM4) refuses wider frames. */
export const V4L2_MAX_WIDTH = 2032;

export const configSchema = z
  .strictObject({
    /** The site this box belongs to: first segment of every MQTT topic. */
    site: name.default('demo'),
    /** This box's name on the site. */
    device: name.default('outpost'),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
      })
      .prefault({}),
    shutdown: z
      .strictObject({
        /** Bound on stopping everything after SIGTERM/SIGINT; systemd's TimeoutStopSec is above it. */
        timeoutMs: z.int().min(500).max(60_000).default(4000),
      })
      .prefault({}),
    broker: z
      .strictObject({
        tcp: z
          .strictObject({
            host: loopbackHost.default('127.0.0.1'),
            port: port.default(1883),
          })
          .prefault({}),
      })
      .prefault({}),
    sfu: z
      .strictObject({
        /** `static`: send RTP to host:port and nothing else (mediasoup PlainTransport, a receiver…). */
        mode: z.literal('static', { error: 'sfu.mode must be: static' }).default('static'),
        host: host.default('127.0.0.1'),
      })
      .prefault({}),
    cameras: z
      .array(camera)
      .max(8, { error: 'at most 8 cameras per box' })
      .prefault([{ name: 'cam0' }]),
  })
  .superRefine((config, ctx) => {
    const seenNames = new Map<string, number>();
    const seenPorts = new Map<number, number>();
    config.cameras.forEach((cam, index) => {
      const sameName = seenNames.get(cam.name);
      if (sameName !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', index, 'name'],
          input: cam.name,
          message: `camera name already used by cameras[${sameName}]; each camera needs its own name`,
        });
      }
      seenNames.set(cam.name, index);
      const samePort = seenPorts.get(cam.rtp.port);
      if (samePort !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', index, 'rtp', 'port'],
          input: cam.rtp.port,
          message: `RTP port already used by cameras[${samePort}]; give each camera its own rtp.port`,
        });
      }
      seenPorts.set(cam.rtp.port, index);
      if (cam.encoder === 'v4l2h264enc' && cam.width > V4L2_MAX_WIDTH) {
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', index, 'width'],
          input: cam.width,
          message: `the Pi hardware encoder refuses widths above ${V4L2_MAX_WIDTH} px; lower the width or use encoder: auto`,
        });
      }
    });
  });

export type Config = z.output<typeof configSchema>;
export type CameraConfig = Config['cameras'][number];

/** Keys whose values are secrets: `check-config` and logs print them redacted. */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'password',
  'apiSecret',
  'adminKey',
  'key',
  'secret',
]);
