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

/** An absolute file path (config points at provisioned files under /etc/outpost). */
const path = z.string().regex(/^\/[^\0]*$/, { error: 'give an absolute path, e.g. /etc/outpost/tls/ca.crt' });

/** A LAN listener: TLS only, so any address may be used. */
const lanListener = z.strictObject({
  host: z
    .union([z.ipv4(), z.ipv6()], { error: 'listen address is an IP, e.g. 0.0.0.0 or 192.168.10.2' })
    .default('0.0.0.0'),
  port,
});

/** An IPv4/IPv6 literal or a DNS-style host name (resolved on the site LAN, never public DNS). */
const host = z.union([z.ipv4(), z.ipv6(), z.hostname()], {
  error: 'give an IP address or a host name, e.g. 192.168.10.2 or sfu.site.lan',
});

/**
 * SRTP suites by their SDP names (RFC 4568, RFC 7714) and what srtpenc/srtpdec call their parts.
 * Master key lengths are key + salt: 16 + 14 for AES-CM, 16 + 12 for AES-GCM (RFC 7714 §12).
 * Janus's streaming plugin decrypts only the two AES-CM suites (`srtpsuite` 80 or 32).
 */
export const SRTP_SUITES = {
  AES_CM_128_HMAC_SHA1_80: { cipher: 'aes-128-icm', auth: 'hmac-sha1-80', keyBytes: 30, janusSuite: 80 },
  AES_CM_128_HMAC_SHA1_32: { cipher: 'aes-128-icm', auth: 'hmac-sha1-32', keyBytes: 30, janusSuite: 32 },
  AEAD_AES_128_GCM: { cipher: 'aes-128-gcm', auth: 'null', keyBytes: 28, janusSuite: undefined },
} as const;
export type SrtpSuite = keyof typeof SRTP_SUITES;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Why a base64 master key does not fit `suite`, or undefined when it does. */
export function srtpKeyProblem(key: string, suite: SrtpSuite): string | undefined {
  const want = SRTP_SUITES[suite].keyBytes;
  const make = `make one with: head -c ${want} /dev/urandom | base64`;
  if (!BASE64.test(key) || key.length % 4 !== 0) return `is not base64 (${make})`;
  const got = Buffer.from(key, 'base64').length;
  if (got !== want) return `decodes to ${got} bytes; ${suite} needs ${want} (master key + salt); ${make}`;
  return undefined;
}

const srtp = z
  .strictObject({
    suite: z
      .enum(Object.keys(SRTP_SUITES) as [SrtpSuite, ...SrtpSuite[]], {
        error: `sfu.srtp.suite must be one of: ${Object.keys(SRTP_SUITES).join(', ')}`,
      })
      .default('AES_CM_128_HMAC_SHA1_80'),
    /** Inline master key + salt, base64 as in SDP's a=crypto and Janus's srtpcrypto. */
    key: z.string().optional(),
    /** A file holding the base64 key (from provisioning); must not be readable by group or others. */
    keyFile: z.string().startsWith('/', { error: 'give keyFile as an absolute path' }).optional(),
  })
  .superRefine((value, ctx) => {
    if ((value.key === undefined) === (value.keyFile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['key'],
        input: undefined,
        message: 'give exactly one of sfu.srtp.key (inline base64) or sfu.srtp.keyFile (a 0600 file)',
      });
      return;
    }
    if (value.key !== undefined) {
      const problem = srtpKeyProblem(value.key, value.suite);
      // The key itself is a secret: the message never repeats it.
      if (problem) ctx.addIssue({ code: 'custom', path: ['key'], input: '<redacted>', message: problem });
    }
  });

const janus = z.strictObject({
  /** Janus HTTP API endpoint; default http://{sfu.host}:8088/janus. */
  url: z
    .url({ protocol: /^https?$/, error: 'give the Janus HTTP API URL, e.g. http://sfu.site.lan:8088/janus' })
    .optional(),
  /** Janus `api_secret` (janus.jcfg), when the gateway requires one. */
  apiSecret: z.string().min(1).optional(),
  /** Streaming plugin `admin_key`, when the gateway requires one to create mountpoints. */
  adminKey: z.string().min(1).optional(),
  /** Secret set on each mountpoint: needed to edit or destroy it, and to see its full info. */
  secret: z.string().min(1).optional(),
  /** Camera n (0-based, in config order) gets mountpoint id base + n unless it sets janusMountpointId. */
  mountpointIdBase: z
    .int()
    .min(1)
    .max(2 ** 52)
    .default(1000),
  /**
   * Start and supervise a Janus of our own on loopback (Debian's `janus`, a config generated under
   * dataDir/janus): for a development box and `--defaults`; a site runs its own Janus.
   */
  launch: z.boolean().default(false),
});

/** The site console: the web page the hub serves (console/ in the repository, daemon/src/console/). */
const siteConsole = z.strictObject({
  /** Where the console's HTTPS listens; the hub's LAN address, or loopback on a development box. */
  host: z
    .union([z.ipv4(), z.ipv6()], { error: 'console.host is an IP, e.g. 0.0.0.0 or 127.0.0.1' })
    .default('0.0.0.0'),
  port: port.default(8443),
  /**
   * Certificate and key (PEM) for HTTPS; default broker.tls (the hub's certificate from provisioning).
   * Without either, on loopback only, a development certificate is made under dataDir/console/tls.
   */
  tls: z.strictObject({ cert: path, key: path }).optional(),
  /** A login lasts this long without use (sliding), and at most 7 days. */
  sessionIdleMinutes: z
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(12 * 60),
  /**
   * A development box: the daemon prints a login link for local-admin (valid for this run, loopback
   * only), so `npm start` ends with a URL that opens the console.
   */
  devLogin: z.boolean().default(false),
  alerts: z
    .strictObject({
      /** An unacknowledged panic alert notifies every console again this often. */
      renotifyMinutes: z.number().min(0.1).max(120).default(5),
      /** Alerts kept in the inbox; past it, acknowledged ones go first, oldest first. */
      keep: z.int().min(10).max(10_000).default(500),
    })
    .prefault({}),
  clips: z
    .strictObject({
      /** Bytes of panic clips the hub keeps for the console (dataDir/console/clips). */
      quotaBytes: z
        .int()
        .min(16 * 1024 * 1024)
        .default(4 * 1024 * 1024 * 1024),
    })
    .prefault({}),
  /** Minutes of CPU and temperature kept per box for the Devices page's chart. */
  telemetryHistoryMinutes: z
    .int()
    .min(1)
    .max(24 * 60)
    .default(60),
});

const testSource = z.strictObject({
  type: z.literal('test'),
  /** videotestsrc pattern; `smpte` shows colour bars, `ball` shows motion. */
  pattern: z.enum(['smpte', 'ball', 'snow', 'black', 'white', 'gradient']).default('smpte'),
  /** Measurement only (bench:latency): frames carry their capture time as a block code; see stamped-source.ts. */
  stamp: z.boolean().default(false),
});

/** A Pi camera module through libcamera (libcamerasrc, from gstreamer1.0-libcamera). */
const libcameraSource = z.strictObject({
  type: z.literal('libcamera'),
  /** libcamera's id of one camera (`libcamera-hello --list-cameras`); the first camera when absent. */
  cameraName: z.string().min(1).optional(),
});

/** A USB (UVC) camera through Video4Linux. */
const v4l2Source = z.strictObject({
  type: z.literal('v4l2'),
  /** A stable /dev/v4l/by-id/… path survives replugging and reboots; /dev/videoN may change. */
  device: z
    .string()
    .regex(/^\/dev\/[^\0]+$/, {
      error:
        'give the camera device as /dev/video0 or a stable /dev/v4l/by-id/… path (see `outpost cameras`)',
    })
    .default('/dev/video0'),
  /** What the camera sends: raw YUYV (no decoding), or MJPEG (decoded by jpegdec before encoding). */
  format: z.enum(['yuyv', 'mjpeg'], { error: 'source.format must be yuyv or mjpeg' }).default('yuyv'),
});

/** An IP camera on the isolated LAN: its H.264 is passed through, never decoded or re-encoded. */
const rtspSource = z.strictObject({
  type: z.literal('rtsp'),
  url: z
    .url({ protocol: /^rtsps?$/, error: 'give the camera stream as rtsp://HOST[:PORT]/PATH' })
    .refine((url) => !/^rtsps?:\/\/[^/]*@/.test(url), {
      error: 'put the credentials in source.username and source.password (redacted in logs), not in the URL',
    }),
  username: z.string().min(1).optional(),
  /** Secret: redacted in check-config output and logs. */
  password: z.string().min(1).optional(),
  /** rtspsrc's jitter buffer; 0 passes packets on at once (a LAN rarely reorders). */
  latencyMs: z.int().min(0).max(5000).default(0),
  /** `auto` lets rtspsrc try UDP then TCP; `tcp` (interleaved) gets through firewalls that drop UDP. */
  transport: z.enum(['auto', 'udp', 'tcp']).default('auto'),
});

const cameraSource = z.discriminatedUnion('type', [testSource, libcameraSource, v4l2Source, rtspSource], {
  error: 'source.type must be one of: test, libcamera, v4l2, rtsp',
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
      /** Send RTCP sender reports to port + 1 (lip sync and stats at the SFU). */
      rtcp: z.boolean().default(false),
    })
    .prefault({}),
  /** sfu.mode janus: this camera's streaming mountpoint id (unique on the site's Janus). */
  janusMountpointId: z
    .int()
    .min(1)
    .max(2 ** 52)
    .optional(),
});

/** A BCM GPIO number (the numbers on Raspberry Pi pinout diagrams: GPIO17 is 17). */
const bcmPin = z
  .int({ error: 'a GPIO pin is its BCM number, e.g. 17 for GPIO17 (header pin 11)' })
  .min(0, { error: 'BCM GPIO numbers are 0–53' })
  .max(53, { error: 'BCM GPIO numbers are 0–53' });

/** The panic button and the status LED (gpio/). Absent: no button, no LED (cmd/clip and the CLI still work). */
const gpio = z.strictObject({
  /**
   * `auto`: sysfs (onoff) when /sys/class/gpio exists, else the GPIO character device (Debian's gpiod
   * tools). Force one with `sysfs` or `chardev`.
   */
  backend: z
    .enum(['auto', 'sysfs', 'chardev'], { error: 'gpio.backend must be one of: auto, sysfs, chardev' })
    .default('auto'),
  /** The GPIO chip's label; default: the first of pinctrl-bcm2711, pinctrl-bcm2835, pinctrl-rp1 found. */
  chip: z.string().min(1).optional(),
  button: z
    .strictObject({
      pin: bcmPin,
      /** Pressed pulls the pin to ground (the usual wiring, with a pull-up). */
      activeLow: z.boolean().default(true),
      /** chardev only: set the line's bias (sysfs cannot; use `gpio=17=ip,pu` in config.txt). */
      bias: z.enum(['as-is', 'pull-up', 'pull-down', 'disable']).default('pull-up'),
      /** An edge starts a timer; the pin is read again when it fires, and only a changed level counts. */
      debounceMs: z.int().min(1).max(1000).default(20),
      /** Held this long: a long press. */
      longPressMs: z.int().min(100).max(60_000).default(2000),
      /** What a press does (at once, on the debounced press-down). */
      onPress: z.enum(['panic', 'none']).default('panic'),
      /** What holding the button for longPressMs does, in addition (e.g. onPress none + onLongPress panic). */
      onLongPress: z.enum(['panic', 'none']).default('none'),
    })
    .optional(),
  led: z
    .strictObject({
      pin: bcmPin,
      /** The LED lights when the pin is low (wired to 3.3 V through a resistor). */
      activeLow: z.boolean().default(false),
    })
    .optional(),
});

/** Panic clips: capture, store, delivery (clips/). */
const clips = z.strictObject({
  /** Seconds of video before the press. */
  preRollSeconds: z.number().min(0).max(60).default(10),
  /** Seconds of video after the press. */
  postRollSeconds: z.number().min(0.5).max(120).default(10),
  /** Cameras in a clip; default: every camera. */
  cameras: z.array(name).optional(),
  /**
   * Where the cameras' pre-roll segments are kept (rewritten every second: a tmpfs, never the SD card).
   * Default: `$RUNTIME_DIRECTORY/preroll` under systemd (/run/outpost), else a folder in the temp dir.
   */
  preRollDir: z
    .string()
    .min(1)
    // Segment names are printf patterns (`…/%08d.ts`) for multifilesink and multifilesrc.
    .refine((dir) => !dir.includes('%'), {
      error: 'clips.preRollDir cannot contain "%"; choose another folder',
    })
    .optional(),
  /** Bytes of clips kept under dataDir/clips; the oldest delivered clips go first. */
  quotaBytes: z
    .int()
    .min(1024 * 1024)
    .default(2 * 1024 * 1024 * 1024),
  /** Delivered clips older than this are deleted. */
  maxAgeDays: z.number().min(0.001).max(3650).default(30),
  /**
   * Below this many free bytes on the data dir's filesystem the disk is in danger: undelivered clips
   * are deleted too (oldest first) and a `clip-store` alert says so.
   */
  minFreeBytes: z
    .int()
    .min(0)
    .default(256 * 1024 * 1024),
  /** Raw bytes per chunk message; kept below broker.limits.maxPacketBytes (the hub's limit too). */
  chunkBytes: z
    .int()
    .min(1024)
    .max(8 * 1024 * 1024)
    .default(128 * 1024),
  /** Chunks handed to the uplink and not yet acknowledged by the hub, at most. */
  inFlightChunks: z.int().min(1).max(256).default(8),
});

/**
 * What crosses the site bridge upward, by class. When the on-disk store is full the lowest class goes
 * first, in this order: telemetry, then on-demand clip chunks, replies, retained state, clip
 * manifests, and last alerts and chat (bridge/queue.ts).
 */
export const BRIDGE_CLASSES = ['telemetry', 'chunk', 'reply', 'state', 'manifest', 'alert', 'chat'] as const;
export type BridgeClass = (typeof BRIDGE_CLASSES)[number];

/**
 * A topic filter under the site's own prefix `outpost/v1/{site}/`, written without it (`+/alert`):
 * a bridge can never carry another site's topics.
 */
const siteFilter = z
  .string()
  .min(1)
  .max(200)
  .refine(
    (filter) =>
      !filter.startsWith('/') &&
      !filter.startsWith('outpost/') &&
      !filter.startsWith('$') &&
      filter.split('/').every((level, i, all) => {
        if (level === '#') return i === all.length - 1;
        return level === '+' || (level.length > 0 && !level.includes('+') && !level.includes('#'));
      }),
    {
      error:
        'a bridge topic is an MQTT filter under outpost/v1/{site}/, written without that prefix, e.g. +/alert or chat/+',
    },
  );

/** The defaults: contract v1's topics that matter to an operations centre (docs/bridge.md). */
export const DEFAULT_BRIDGE_UP: ReadonlyArray<{ topic: string; class: BridgeClass }> = [
  // Chat first: a chat channel may be named like a device topic (`chat/status` matches `+/status`), and
  // the first entry that matches a topic decides its class.
  { topic: 'chat/+', class: 'chat' },
  { topic: '+/alert', class: 'alert' },
  // The hub's alert inbox (site console): retained entries, and who acknowledged what.
  { topic: 'inbox/+/+/+', class: 'state' },
  { topic: 'inbox/+/+/+/ack', class: 'alert' },
  { topic: '+/status', class: 'state' },
  { topic: '+/camera/+/state', class: 'state' },
  { topic: '+/clip/+', class: 'manifest' },
  { topic: '+/reply/+', class: 'reply' },
  { topic: '+/telemetry', class: 'telemetry' },
];
// `inbox/+/+/+/ack/+`: an acknowledgement by a named centre operator (the centre's ACL lets each console
// account write only under its own name); the bridge publishes it on the site's `…/ack`.
export const DEFAULT_BRIDGE_DOWN: readonly string[] = [
  '+/cmd/#',
  'chat/+',
  'inbox/+/+/+/ack',
  'inbox/+/+/+/ack/+',
];

/**
 * Topics whose payload the site broker stamps with the sender it authenticated (chat, inbox
 * acknowledgements): they may cross both ways, because the bridge recognises its own echoes by the
 * stamp (bridge/bridge.ts).
 */
export function stampedTopic(filter: string): boolean {
  return filter.startsWith('chat/') || /^inbox\/[^/]+\/[^/]+\/[^/]+\/ack$/.test(filter);
}

/** The hub's outbound link to the operations centre's broker (bridge/). Hub role only. */
const bridge = z
  .strictObject({
    /** The central broker, e.g. mqtts://ops.example.net:8883 (plain mqtt:// on loopback only). */
    url: z.url({
      protocol: /^mqtts?$/,
      error: 'bridge.url is mqtts://HOST:PORT (the central broker); mqtt:// only to a loopback address',
    }),
    /** PEM CA that signed the central broker's certificate: the site CA or the centre's own CA. */
    ca: path.optional(),
    /** The site's account on the central broker (password auth; with a client certificate the CN). */
    username: z.string().min(1).max(128).optional(),
    /** File holding that account's password (0600). */
    passwordFile: path.optional(),
    /** Client certificate and key (PEM) presented to the central broker. */
    cert: path.optional(),
    key: path.optional(),
    /** MQTT client id at the central broker; default `outpost-bridge-{site}`. */
    clientId: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'bridge.clientId is 1–64 of A-Z a-z 0-9 . _ -' })
      .optional(),
    keepAliveSeconds: z.int().min(5).max(600).default(30),
    /** Reconnects back off from 1 s, doubling up to this (±20 % jitter). */
    reconnectMaxSeconds: z.int().min(1).max(3600).default(60),
    /** Messages sent to the central broker and not yet acknowledged, at most. */
    inFlight: z.int().min(1).max(1000).default(32),
    /** Bytes the on-disk store may hold while the link is down (payloads and topics). */
    maxQueueBytes: z
      .int()
      .min(64 * 1024)
      .max(16 * 1024 * 1024 * 1024)
      .default(64 * 1024 * 1024),
    /** What crosses up, first match decides the class. */
    up: z
      .array(z.strictObject({ topic: siteFilter, class: z.enum(BRIDGE_CLASSES) }))
      .max(64)
      .default(() => DEFAULT_BRIDGE_UP.map((entry) => ({ ...entry }))),
    /** What crosses down (published on the site broker as the bridge's identity, `centre`). */
    down: z
      .array(siteFilter)
      .max(64)
      .default(() => [...DEFAULT_BRIDGE_DOWN]),
    /**
     * Clip chunks cross only on demand: after the centre asks for them with `cmd/clip-chunks`, the
     * chunks of that clip cross for this long (docs/bridge.md says why).
     */
    clipChunkWindowSeconds: z.int().min(0).max(86_400).default(900),
    /** The link state (retained `…/{hub}/bridge`) is republished at most this often while counts move. */
    stateIntervalSeconds: z.int().min(1).max(3600).default(10),
  })
  .superRefine((value, ctx) => {
    const url = new URL(value.url);
    if (url.protocol === 'mqtt:' && !['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)) {
      ctx.addIssue({
        code: 'custom',
        path: ['url'],
        input: value.url,
        message: 'a bridge leaves the site: use mqtts:// (plain mqtt:// only to a loopback address)',
      });
    }
    if (url.protocol === 'mqtts:' && !value.ca) {
      ctx.addIssue({
        code: 'custom',
        path: ['ca'],
        input: undefined,
        message: "an mqtts:// bridge needs the CA that signed the central broker's certificate (bridge.ca)",
      });
    }
    if ((value.cert === undefined) !== (value.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [value.cert === undefined ? 'cert' : 'key'],
        input: undefined,
        message: 'give both bridge.cert and bridge.key, or neither',
      });
    }
    if (value.passwordFile !== undefined && value.username === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['username'],
        input: undefined,
        message: 'bridge.passwordFile needs bridge.username (the site account on the central broker)',
      });
    }
    if (value.passwordFile === undefined && value.cert === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['passwordFile'],
        input: undefined,
        message:
          'the central broker needs a credential: bridge.username + bridge.passwordFile, or bridge.cert + bridge.key (outpost-provision centre add-site makes them)',
      });
    }
    // A topic carried both ways would come back to where it came from: only stamped ones may (echoes
    // are recognised by the stamp, bridge/bridge.ts).
    for (const down of value.down) {
      if (stampedTopic(down)) continue;
      const clash = value.up.find((up) => !stampedTopic(up.topic) && filtersOverlap(up.topic, down));
      if (clash) {
        ctx.addIssue({
          code: 'custom',
          path: ['down'],
          input: down,
          message: `${down} also crosses up (${clash.topic}): a topic may cross one way only (chat and inbox acknowledgements excepted)`,
        });
      }
    }
  });

/** Site-level topic segments that are never a device (the broker reserves these identity names). */
const SITE_SEGMENTS: ReadonlySet<string> = new Set(['chat', 'inbox']);

/**
 * Could some topic under the site prefix match both filters? Level by level `+`/`#` match anything,
 * except that a `+` in the first level is a device, and `chat` and `inbox` are never devices.
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  for (let i = 0; ; i += 1) {
    const p = x[i];
    const q = y[i];
    if (p === '#' || q === '#') return true;
    if (p === undefined || q === undefined) return p === q;
    if (i === 0 && ((p === '+' && SITE_SEGMENTS.has(q)) || (q === '+' && SITE_SEGMENTS.has(p)))) return false;
    if (p !== '+' && q !== '+' && p !== q) return false;
  }
}

/**
 * Prometheus `/metrics` (metrics/). HTTPS with a credential: no anonymous scraping on the LAN. Plain
 * HTTP only on loopback.
 */
const metrics = z
  .strictObject({
    host: z
      .union([z.ipv4(), z.ipv6()], { error: 'metrics.host is an IP to listen on, e.g. 0.0.0.0' })
      .default('0.0.0.0'),
    port: port.default(9464),
    /** Server certificate and key (PEM); default: broker.tls's (the hub's certificate). */
    tls: z.strictObject({ cert: path, key: path }).optional(),
    /** File holding the bearer token Prometheus sends (`authorization: credentials_file`). */
    bearerTokenFile: path.optional(),
    /** HTTP basic auth (`basic_auth` in Prometheus): user name and a file holding the password. */
    basicAuth: z.strictObject({ username: z.string().min(1).max(128), passwordFile: path }).optional(),
  })
  .superRefine((value, ctx) => {
    if (!value.bearerTokenFile && !value.basicAuth) {
      ctx.addIssue({
        code: 'custom',
        path: ['bearerTokenFile'],
        input: undefined,
        message:
          'scraping needs a credential: metrics.bearerTokenFile or metrics.basicAuth (no anonymous scraping)',
      });
    }
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
    /**
     * `hub`: this box's broker is the site broker (TLS listeners on the LAN). `camera`: its broker stays
     * on loopback and the uplink carries everything to the hub.
     */
    role: z.enum(['hub', 'camera'], { error: 'role must be hub or camera' }).default('hub'),
    /** Writable state: broker persistence, the uplink's outgoing store, clips. systemd's StateDirectory. */
    dataDir: z.string().min(1).default('/var/lib/outpost'),
    broker: z
      .strictObject({
        tcp: z
          .strictObject({
            host: loopbackHost.default('127.0.0.1'),
            port: port.default(1883),
          })
          .prefault({}),
        /** MQTT over TLS for the LAN (hub role). Needs `tls` files. */
        mqtts: lanListener.optional(),
        /** MQTT over secure WebSocket for browser consoles (hub role). Needs `tls` files. */
        wss: lanListener.optional(),
        /** Site CA, server certificate and key from provisioning: PEM files. */
        tls: z
          .strictObject({
            ca: path,
            cert: path,
            key: path,
          })
          .optional(),
        /** Chat messages kept per channel (retained on `…/chat/{channel}/history`). */
        chatHistory: z.int().min(0).max(1000).default(50),
        /** Chat channels the broker keeps (see chatChannelIdleSeconds for a message opening one more). */
        chatChannels: z.int().min(1).max(10_000).default(64),
        /**
         * When all chatChannels are in use, a message opening a new channel takes the place of the one
         * quiet for longest if it has been quiet this long (its history goes with it); else it is refused.
         */
        chatChannelIdleSeconds: z
          .int()
          .min(1)
          .max(10 * 365 * 86_400)
          .default(7 * 86_400),
        /** Who may connect (written by outpost-provision); reloaded on SIGHUP. */
        identitiesFile: path.optional(),
        limits: z
          .strictObject({
            /** Largest MQTT packet accepted, bytes; a bigger one disconnects its sender. */
            maxPacketBytes: z
              .int()
              .min(1024)
              .max(16 * 1024 * 1024)
              .default(256 * 1024),
            maxConnections: z.int().min(1).max(100_000).default(1000),
            /** Publishes per second a client may send (sustained; bursts up to 2× are allowed). */
            maxPublishRate: z.int().min(1).max(1_000_000).default(500),
            /**
             * Seconds a connection may be silent before the broker's TCP keep-alive probes its peer.
             * Every keep-alive a client asks for (0–65535, MQTT 3.1.1 §3.1.2.10) is accepted; this is
             * what finds a dead peer that asked for 0 (docs/mqtt.md, Limits).
             */
            tcpKeepAliveSeconds: z.int().min(10).max(7200).default(60),
            /** Password checks (scrypt, 16 MiB each) running at once; more wait in the login queue. */
            loginConcurrency: z.int().min(1).max(16).default(2),
            /** Logins waiting for a password check; beyond this, CONNACK 3 (server unavailable). */
            loginQueue: z.int().min(0).max(10_000).default(128),
          })
          .prefault({}),
      })
      .prefault({}),
    /** The daemon's own MQTT client: to its own broker (hub), or to the hub's TLS listener (camera). */
    uplink: z
      .strictObject({
        /** e.g. mqtts://hub.plant.lan:8883; required in camera role. */
        url: z.url({
          protocol: /^mqtts?$/,
          error: 'uplink.url is mqtts://HOST:PORT (or mqtt:// on loopback)',
        }),
        /** PEM site CA that signed the hub's certificate. */
        ca: path.optional(),
        username: z.string().min(1),
        /** File holding this device's MQTT password (0600). */
        passwordFile: path,
        /** Optional client certificate and key (PEM) presented to the hub's TLS listener. */
        cert: path.optional(),
        key: path.optional(),
      })
      .optional(),
    telemetry: z
      .strictObject({
        intervalSeconds: z.int().min(5).max(3600).default(30),
      })
      .prefault({}),
    sfu: z
      .strictObject({
        /**
         * `static`: send RTP to host:port and nothing else (mediasoup PlainTransport, a receiver…).
         * `janus`: the same, and keep a Janus streaming mountpoint per camera (camera/janus.ts).
         */
        mode: z
          .enum(['static', 'janus'], { error: 'sfu.mode must be one of: static, janus' })
          .default('static'),
        host: host.default('127.0.0.1'),
        /** Encrypt every camera's RTP with this SRTP master key (one key per box; SSRCs differ). */
        srtp: srtp.optional(),
        janus: janus.prefault({}),
      })
      .prefault({}),
    gpio: gpio.optional(),
    clips: clips.prefault({}),
    /** Updates (docs/updates.md, "Health gate"): when a new root slot on trial is committed. */
    update: z
      .strictObject({
        /** The daemon must be READY and healthy within this many seconds of boot, or the box goes back. */
        healthWindowSeconds: z.int().min(30).max(3600).default(180),
        /** …and stay healthy this long without a break before the slot is committed. */
        healthySettleSeconds: z.int().min(0).max(600).default(15),
      })
      .prefault({}),
    /** Hub role: forward to the operations centre's broker (bridge/, docs/bridge.md). */
    bridge: bridge.optional(),
    /** Prometheus /metrics over HTTPS (metrics/, docs/metrics.md). */
    metrics: metrics.optional(),
    /** The site console (hub role only). Absent: no console. */
    console: siteConsole.optional(),
    cameras: z
      .array(camera)
      .max(8, { error: 'at most 8 cameras per box' })
      .prefault([{ name: 'cam0' }]),
  })
  .superRefine((config, ctx) => {
    for (const listener of ['mqtts', 'wss'] as const) {
      if (config.broker[listener] && !config.broker.tls) {
        ctx.addIssue({
          code: 'custom',
          path: ['broker', listener],
          input: config.broker[listener],
          message: 'a LAN listener is TLS only: add broker.tls (ca, cert, key from provisioning)',
        });
      }
      if (config.broker[listener] && config.role === 'camera') {
        ctx.addIssue({
          code: 'custom',
          path: ['broker', listener],
          input: config.broker[listener],
          message: 'a camera-role box keeps its broker on loopback; remove this listener or set role: hub',
        });
      }
    }
    if (config.console && config.role === 'camera') {
      ctx.addIssue({
        code: 'custom',
        path: ['console'],
        input: config.console,
        message: 'the site console is served by the hub; remove console or set role: hub',
      });
    }
    if (config.sfu.janus.launch && !['127.0.0.1', '::1', 'localhost'].includes(config.sfu.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['sfu', 'janus', 'launch'],
        input: true,
        message:
          'a launched Janus listens on loopback only: set sfu.host to 127.0.0.1, or run the site Janus yourself',
      });
    }
    if (config.role === 'camera' && !config.uplink) {
      ctx.addIssue({
        code: 'custom',
        path: ['uplink'],
        input: undefined,
        message: 'role camera needs uplink (url, username, passwordFile) to reach the hub',
      });
    }
    if (config.uplink && (config.uplink.cert === undefined) !== (config.uplink.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['uplink', config.uplink.cert === undefined ? 'cert' : 'key'],
        input: undefined,
        message: 'give both uplink.cert and uplink.key, or neither',
      });
    }
    if (config.uplink?.url.startsWith('mqtts:') && !config.uplink.ca) {
      ctx.addIssue({
        code: 'custom',
        path: ['uplink', 'ca'],
        input: undefined,
        message: 'an mqtts:// uplink needs the site CA file to check the hub (there is no public CA offline)',
      });
    }
    if (config.bridge && config.role !== 'hub') {
      ctx.addIssue({
        code: 'custom',
        path: ['bridge'],
        input: undefined,
        message: "only the hub bridges to the centre; a camera box's messages reach it through the hub",
      });
    }
    if (config.metrics) {
      const loopback = ['127.0.0.1', '::1'].includes(config.metrics.host);
      if (!config.metrics.tls && !config.broker.tls && !loopback) {
        ctx.addIssue({
          code: 'custom',
          path: ['metrics', 'tls'],
          input: undefined,
          message:
            'metrics on the LAN are HTTPS: give metrics.tls (cert, key) or broker.tls, or listen on 127.0.0.1',
        });
      }
    }
    const seenNames = new Map<string, number>();
    const seenPorts = new Map<number, number>();
    const seenSsrcs = new Map<number, number>();
    const seenMountpoints = new Map<number, number>();
    if (config.sfu.mode === 'janus' && config.sfu.srtp?.suite === 'AEAD_AES_128_GCM') {
      ctx.addIssue({
        code: 'custom',
        path: ['sfu', 'srtp', 'suite'],
        input: config.sfu.srtp.suite,
        message:
          "Janus's streaming plugin decrypts only AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32; pick one of those",
      });
    }
    config.cameras.forEach((cam, index) => {
      if (config.sfu.srtp) {
        // One master key for every camera is safe only while SSRCs differ (RFC 3711 §9.1: the same
        // key, SSRC and index would reuse keystream).
        const ssrc = cam.rtp.ssrc ?? ssrcFor(cam.name);
        const sameSsrc = seenSsrcs.get(ssrc);
        if (sameSsrc !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['cameras', index, 'rtp', 'ssrc'],
            input: ssrc,
            message: `SSRC already used by cameras[${sameSsrc}]; with SRTP every camera needs its own SSRC`,
          });
        }
        seenSsrcs.set(ssrc, index);
      }
      if (config.sfu.mode === 'janus') {
        const id = mountpointIdFor(config, index);
        const sameId = seenMountpoints.get(id);
        if (sameId !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['cameras', index, 'janusMountpointId'],
            input: id,
            message: `Janus mountpoint id ${id} already used by cameras[${sameId}]; give each camera its own`,
          });
        }
        seenMountpoints.set(id, index);
      }
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
      if (cam.rtp.rtcp) {
        const rtcpPort = cam.rtp.port + 1;
        // Unique RTP ports already keep two RTCP ports apart; an RTCP port on another camera's RTP port is the clash.
        const clash = config.cameras.findIndex((other) => other.rtp.port === rtcpPort);
        if (rtcpPort > 65535 || clash !== -1) {
          ctx.addIssue({
            code: 'custom',
            path: ['cameras', index, 'rtp', 'port'],
            input: cam.rtp.port,
            message:
              rtcpPort > 65535
                ? 'with rtp.rtcp, RTCP goes to rtp.port + 1, which must be a port too; lower rtp.port'
                : `with rtp.rtcp, RTCP goes to rtp.port + 1 = ${rtcpPort}, already used by cameras[${clash}]; space RTP ports 2 apart`,
          });
        }
      }
      if (cam.source.type === 'rtsp' && cam.encoder !== 'auto') {
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', index, 'encoder'],
          input: cam.encoder,
          message:
            'an rtsp camera is passed through without re-encoding, so no encoder is used; remove encoder',
        });
      }
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
export type ConsoleConfig = NonNullable<Config['console']>;
export type SrtpConfig = NonNullable<Config['sfu']['srtp']>;

/** The Janus mountpoint id of cameras[index]: its own, or sfu.janus.mountpointIdBase + index. */
export function mountpointIdFor(
  config: {
    sfu: { janus: { mountpointIdBase: number } };
    cameras: readonly { janusMountpointId?: number | undefined }[];
  },
  index: number,
): number {
  return config.cameras[index]?.janusMountpointId ?? config.sfu.janus.mountpointIdBase + index;
}

/** A stable, non-zero 32-bit SSRC from the camera name (FNV-1a), so restarts keep the same SSRC. */
export function ssrcFor(cameraName: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(cameraName)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash === 0 ? 1 : hash;
}

/** Keys whose values are secrets: `check-config` and logs print them redacted. */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'password',
  'apiSecret',
  'adminKey',
  'key',
  'secret',
]);

/**
 * `outpost centre console --config FILE`: the console at the operations centre, served by the same
 * server as a hub's, with the centre's broker (every site's hub bridges to it) behind the login and
 * the page's MQTT connection (docs/console.md, At the operations centre). `outpost-provision centre
 * init` writes one (CENTRE/console/console.yaml).
 */
export const centreConsoleSchema = z
  .strictObject({
    /** The operations centre's name, shown in the page. */
    name: name.default('centre'),
    /** Where the development certificate goes when the console listens on loopback without console.tls. */
    dataDir: path.optional(),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
      })
      .prefault({}),
    centralBroker: z.strictObject({
      /** The central broker as this machine reaches it, e.g. mqtts://mqtt.ops.example:8883. */
      url: z.url({
        protocol: /^mqtts?$/,
        error:
          'centralBroker.url is mqtts://HOST:PORT (the central broker); mqtt:// only to a loopback address',
      }),
      /** PEM CA that signed the central broker's certificate (the centre CA: CENTRE/ca/ca.crt). */
      ca: path.optional(),
    }),
    /** Where the page is served, its certificate, logins: the keys of a hub's `console`. */
    console: siteConsole.prefault({}),
  })
  .superRefine((value, ctx) => {
    const url = new URL(value.centralBroker.url);
    if (url.protocol === 'mqtt:' && !['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)) {
      ctx.addIssue({
        code: 'custom',
        path: ['centralBroker', 'url'],
        input: value.centralBroker.url,
        message:
          "operators' passwords cross this link: use mqtts:// (plain mqtt:// only to a loopback address)",
      });
    }
    if (value.console.devLogin) {
      ctx.addIssue({
        code: 'custom',
        path: ['console', 'devLogin'],
        input: true,
        message:
          'the centre has no local-admin: remove console.devLogin (operators log in with their centre account)',
      });
    }
  });

export type CentreConsoleConfig = z.output<typeof centreConsoleSchema>;
