// Topic contract v1: one zod schema per message type. They are the types the daemon publishes with,
// the validation applied to what crosses into the daemon, and (through z.toJSONSchema) the JSON Schema
// files in docs/schemas/ that consoles build against. docs/topics.md describes them; a test keeps the
// files in step with these schemas.
//
// This module and topics.ts are the contract the web console (console/) shares with the daemon: they
// import nothing but zod and each other, never Node (a lint rule holds them to it), so the page can
// import them without pulling in daemon code.
import { z } from 'zod';

/**
 * Every message a box sends carries its wall time plus a boot id and a per-boot counter, so the console
 * can order one box's events even when its clock jumped (a Pi has no battery clock).
 */
const meta = {
  /** Sender's wall clock, milliseconds since the Unix epoch. */
  at: z.int().nonnegative(),
  /** Random id drawn at each daemon start. */
  bootId: z.string().min(8).max(64),
  /** Counter, +1 per message from this daemon run. */
  seq: z.int().nonnegative(),
};

const utf8Decoder = new TextDecoder();

/** The JSON value of a message's payload, or undefined when the payload is not JSON. */
export function jsonOf(payload: Uint8Array): unknown {
  try {
    return JSON.parse(utf8Decoder.decode(payload)) as unknown;
  } catch {
    return undefined;
  }
}

const name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/);

export const statusPayload = z.strictObject({
  ...meta,
  state: z.enum(['online', 'offline']),
  device: name,
  role: z.enum(['hub', 'camera']),
  version: z.string(),
});

export const telemetryPayload = z.strictObject({
  ...meta,
  cpuLoadPercent: z.number().min(0).max(100),
  /** CPU/SoC temperature; null where the board reports none. */
  temperatureC: z.number().nullable(),
  memory: z.strictObject({ usedBytes: z.int().nonnegative(), totalBytes: z.int().nonnegative() }),
  /** The filesystem holding the data dir. */
  disk: z.strictObject({
    path: z.string(),
    usedBytes: z.int().nonnegative(),
    totalBytes: z.int().nonnegative(),
  }),
  uptimeSeconds: z.number().nonnegative(),
  network: z.array(
    z.strictObject({ iface: z.string(), rxBytes: z.int().nonnegative(), txBytes: z.int().nonnegative() }),
  ),
  /** Raspberry Pi firmware throttling flags (vcgencmd get_throttled); null elsewhere. */
  throttled: z
    .strictObject({
      raw: z.int().nonnegative(),
      underVoltage: z.boolean(),
      throttled: z.boolean(),
      frequencyCapped: z.boolean(),
    })
    .nullable(),
});

export const cameraStatePayload = z.strictObject({
  ...meta,
  camera: name,
  state: z.enum(['starting', 'streaming', 'restarting', 'failed', 'stopped']),
  /** The encoder element in use; null until one is chosen, and for an rtsp camera (passed through, not encoded here). */
  encoder: z.string().nullable(),
  hardwareEncoder: z.boolean(),
  /** Measured encoded output (frames/s, kbit/s over the last ~5 s); null until the first measurement. */
  fps: z.number().nonnegative().nullable(),
  bitrateKbps: z.number().nonnegative().nullable(),
  /** RTP packets sent since the daemon started. */
  packets: z.int().nonnegative(),
  restarts: z.int().nonnegative(),
  lastError: z.string().nullable(),
  /**
   * With `sfu.mode: janus`: the camera's Janus streaming mountpoint (the id a viewer watches) and
   * whether Janus has it now. Absent otherwise. Added in v1 (additive): the site console's live grid
   * is built from it.
   */
  mountpoint: z.strictObject({ id: z.int().positive(), state: z.enum(['present', 'missing']) }).optional(),
});

export const alertPayload = z.strictObject({
  ...meta,
  /** Unique per alert; a clip alert's id is its clip id. */
  id: z.string().min(1).max(64),
  device: name,
  /** `clip-failed`: the clip of panic `clipId` could not be made; no manifest will follow. */
  kind: z.enum(['panic', 'clip-failed', 'camera-failed', 'temperature', 'disk', 'memory', 'clip-store']),
  severity: z.enum(['info', 'warning', 'critical']),
  /** Threshold alerts are raised once and cleared once (hysteresis); events are just `raised`. */
  state: z.enum(['raised', 'cleared']),
  message: z.string().max(500),
  clipId: z.string().optional(),
  cameras: z.array(name).optional(),
  trigger: z.enum(['button', 'mqtt', 'cli']).optional(),
  /** A panic pressed again while this clip was still being recorded: the clip in progress. */
  relatedClipId: z.string().min(1).max(64).optional(),
});

export const clipManifestPayload = z.strictObject({
  ...meta,
  clipId: z.string().min(1).max(64),
  device: name,
  cameras: z.array(name),
  sizeBytes: z.int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  durationMs: z.int().nonnegative(),
  chunkBytes: z.int().positive(),
  chunks: z.int().nonnegative(),
  startAt: z.int().nonnegative(),
  endAt: z.int().nonnegative(),
  /** How the clip was asked for, and the clip that was in progress at the time (if any). */
  trigger: z.enum(['button', 'mqtt', 'cli']).optional(),
  relatedClipId: z.string().min(1).max(64).optional(),
});

/** console → device, on `…/{device}/cmd/{verb}`. The reply goes to `…/{device}/reply/{verb}`. */
export const commandPayload = z.strictObject({
  /** Correlation id, echoed in the reply. */
  id: z.string().min(1).max(64),
  args: z.record(z.string(), z.unknown()).default({}),
});

/**
 * Each verb's `args`, by verb (docs/topics.md, "cmd and reply"). `ping` and `status` take none (and
 * ignore any given); the others refuse an unknown key with BAD_ARGUMENTS.
 */
export const verbArgs = {
  ping: z.object({}),
  status: z.object({}),
  'restart-camera': z.strictObject({ camera: z.string() }),
  /** The console (or `outpost clip`, via: cli) asks for a panic clip: the alert goes out first. */
  clip: z.strictObject({
    /** Cameras in the clip; default: clips.cameras, else every camera. */
    cameras: z.array(z.string()).optional(),
    via: z.enum(['mqtt', 'cli']).default('mqtt'),
  }),
  /** Publish a clip's chunks again (an empty list: its manifest). */
  'clip-chunks': z.strictObject({
    clipId: z.string().min(1).max(64),
    chunks: z.array(z.int().nonnegative()).max(4096),
  }),
} as const;

/** Largest `update-chunk`, raw bytes: its base64 plus the JSON stays under the broker's packet limit. */
export const UPDATE_CHUNK_BYTES = 160 * 1024;

const bundleSha256 = z.string().regex(/^[0-9a-f]{64}$/, 'sha256 is 64 lowercase hex digits');

/**
 * The LAN receiver's verbs (update/receiver.ts, docs/updates.md): `outpost update push` sends a bundle
 * to a box as these commands, under the ACL of every console command.
 */
export const updateVerbArgs = {
  /** A bundle is coming: its sha256, size and version. Answer: `{have, chunkBytes}` (bytes already here). */
  'update-offer': z.strictObject({
    sha256: bundleSha256,
    size: z
      .int()
      .positive()
      .max(16 * 1024 * 1024 * 1024),
    version: z.string().max(64).default('unknown'),
    allowOlder: z.boolean().default(false),
  }),
  /** One piece of it, base64, at its offset. Answer: `{have}`. */
  'update-chunk': z.strictObject({
    sha256: bundleSha256,
    offset: z.int().nonnegative(),
    data: z.string().max(UPDATE_CHUNK_BYTES * 2),
  }),
  /** All sent: the box checks the sha256 and hands the bundle to its installer. Answer: `{queued}`. */
  'update-commit': z.strictObject({ sha256: bundleSha256 }),
  /** Give up this transfer and delete what arrived. */
  'update-abort': z.strictObject({ sha256: bundleSha256 }),
} as const;

/** The `cmd/{verb}` payload of one verb: `commandPayload` with that verb's `args`. */
const commandOf = <A extends z.ZodType>(args: A) => commandPayload.extend({ args: args.optional() });

export const replyPayload = z.strictObject({
  ...meta,
  id: z.string().min(1).max(64),
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
});

const utf8 = new TextEncoder();

/** The largest chat text, in bytes of UTF-8. */
export const CHAT_MAX_BYTES = 2048;

/** What a chat client publishes on `outpost/v1/{site}/chat/{channel}`. */
export const chatInPayload = z.object({
  text: z
    .string()
    .min(1)
    .refine((text) => utf8.encode(text).length <= CHAT_MAX_BYTES, {
      error: `chat text is at most ${CHAT_MAX_BYTES} bytes of UTF-8`,
    }),
  /** Client-chosen id for de-duplication; the hub draws one when absent. */
  id: z.string().min(1).max(64).optional(),
  // Any other field (`from`, `at`…) is dropped: the hub writes sender and time itself.
});

/** What subscribers receive: stamped by the hub with the authenticated sender and its clock. */
export const chatPayload = z.strictObject({
  id: z.string().min(1).max(64),
  from: name,
  role: z.enum(['device', 'console', 'staff', 'admin']),
  text: z.string(),
  at: z.int().nonnegative(),
});

const slot = z.enum(['A', 'B']);

/** Where a box is with an update; the updater's own state file uses all of them but `receiving`. */
export const updateStateName = z.enum([
  'idle',
  'receiving',
  'installing',
  'rebooting',
  'trial',
  'committed',
  'rolled-back',
  'refused',
  'failed',
]);

/** A root filesystem release: its version and the slot it is in (null: not on a slot, a dev box). */
export const updateRelease = z.strictObject({ version: z.string(), slot: slot.nullable() });

/**
 * Retained, on `…/{device}/update`: where this box is with an update (docs/updates.md). `running` is
 * what runs now; `target` what is being received, installed or tried (or was refused or rolled back).
 */
export const updatePayload = z.strictObject({
  ...meta,
  device: name,
  state: updateStateName,
  running: updateRelease,
  target: z.strictObject({ version: z.string().nullable(), slot: slot.nullable() }).nullable(),
  /** receiving: percent of the bundle received; installing: RAUC's percent; else null. */
  progress: z.number().min(0).max(100).nullable(),
  /** refused, failed, rolled-back: why, in words; else null. */
  reason: z.string().max(2000).nullable(),
  /** refused or failed: the stable error code (UPDATE_*, docs/updates.md); else null. */
  code: z.string().max(64).nullable(),
  /** When this state began (the box's wall clock, ms since the epoch). */
  since: z.int().nonnegative(),
});

/** Messages per bridge class (the drop order, lowest first: telemetry … alert, chat). */
const perClass = z.strictObject({
  telemetry: z.int().nonnegative(),
  chunk: z.int().nonnegative(),
  reply: z.int().nonnegative(),
  state: z.int().nonnegative(),
  manifest: z.int().nonnegative(),
  alert: z.int().nonnegative(),
  chat: z.int().nonnegative(),
});

/**
 * The hub's link to the operations centre (retained, on `…/{hub}/bridge`, on the site broker and on
 * the central broker). The central copy's last will says `down` with `since: null`.
 */
export const bridgeStatePayload = z.strictObject({
  ...meta,
  /** The hub. */
  device: name,
  state: z.enum(['up', 'down']),
  /** When the link went up or down (the hub's clock); null in the last will the central broker publishes. */
  since: z.int().nonnegative().nullable(),
  /** The central broker, as host:port. */
  broker: z.string(),
  /** Waiting in the hub's on-disk store for the central broker. */
  queued: z.strictObject({ messages: z.int().nonnegative(), bytes: z.int().nonnegative() }),
  /** The store's bound (bridge.maxQueueBytes). */
  maxBytes: z.int().nonnegative(),
  /** Messages dropped because the store was full, by class, since the store was created. */
  dropped: perClass,
  /** Messages the central broker has acknowledged (or taken, for QoS 0), since the daemon started. */
  forwarded: z.int().nonnegative(),
});

/** Who may be named as a sender or acknowledger: an identity name and its role, stamped by the broker. */
const role = z.enum(['device', 'console', 'staff', 'admin']);

/** What a console publishes on `…/inbox/{audience}/{device}/{key}/ack`; anything else is dropped. */
export const ackInPayload = z.object({
  /** An optional word for the others ("on my way"). */
  note: z.string().max(200).optional(),
  /**
   * The operator at the operations centre who acknowledged: set only by the site's bridge (identity
   * `centre`), from the central topic `…/ack/{operator}` that the centre's ACL lets only that account
   * write (docs/bridge.md). Refused from anyone else.
   */
  operator: name.optional(),
});

/** An acknowledgement as delivered: stamped by the broker with the authenticated identity and its clock. */
export const ackPayload = z.strictObject({
  by: name,
  role,
  at: z.int().nonnegative(),
  note: z.string().max(200).optional(),
  /** With `by: centre`: the centre operator the bridge carried the acknowledgement for. */
  operator: name.optional(),
});

/**
 * One alert in the hub's inbox, retained on `…/inbox/{audience}/{device}/{key}` (written by the hub
 * only): the latest alert with that id, when the hub first and last heard of it (hub clock), and who
 * acknowledged it. Open alerts and acknowledgements survive a reload, a hub restart and a console that
 * was closed when the alert came. An empty retained message removes an entry (the inbox is bounded).
 */
export const inboxEntryPayload = z.strictObject({
  /** The entry's topic segment: the alert id, or `h-` + a hash of it when the id is not topic-safe. */
  key: z.string().min(1).max(64),
  /** `site`: panic and clip-failed, for everyone on the site (staff too); `console`: box health. */
  audience: z.enum(['site', 'console']),
  device: name,
  alert: alertPayload,
  firstAt: z.int().nonnegative(),
  updatedAt: z.int().nonnegative(),
  ack: ackPayload.nullable(),
  /**
   * A panic alert's clip at the hub's archive: `waiting` (no manifest yet), `receiving` (`have` of
   * `of` chunks), `stored` (complete, sha256 checked by the hub; a console fetches it from the hub and
   * checks it again), `failed` (the box could not make it: `message`), `evicted` (removed by the
   * archive's quota).
   */
  clip: z
    .strictObject({
      state: z.enum(['waiting', 'receiving', 'stored', 'failed', 'evicted']),
      have: z.int().nonnegative(),
      of: z.int().nonnegative().nullable(),
      sizeBytes: z.int().nonnegative().nullable(),
      sha256: z
        .string()
        .regex(/^[0-9a-f]{64}$/)
        .nullable(),
      durationMs: z.int().nonnegative().nullable(),
      message: z.string().max(500).optional(),
    })
    .optional(),
});

/** Every schema of contract v1, by the file name its JSON Schema is written to. */
export const contract = {
  status: statusPayload,
  telemetry: telemetryPayload,
  'camera-state': cameraStatePayload,
  alert: alertPayload,
  'clip-manifest': clipManifestPayload,
  cmd: commandPayload,
  'cmd-ping': commandOf(verbArgs.ping),
  'cmd-status': commandOf(verbArgs.status),
  'cmd-restart-camera': commandOf(verbArgs['restart-camera']),
  'cmd-clip': commandOf(verbArgs.clip),
  'cmd-clip-chunks': commandOf(verbArgs['clip-chunks']),
  'cmd-update-offer': commandOf(updateVerbArgs['update-offer']),
  'cmd-update-chunk': commandOf(updateVerbArgs['update-chunk']),
  'cmd-update-commit': commandOf(updateVerbArgs['update-commit']),
  'cmd-update-abort': commandOf(updateVerbArgs['update-abort']),
  reply: replyPayload,
  'chat-in': chatInPayload,
  chat: chatPayload,
  'bridge-state': bridgeStatePayload,
  'ack-in': ackInPayload,
  ack: ackPayload,
  'inbox-entry': inboxEntryPayload,
  update: updatePayload,
} as const;

export type StatusPayload = z.output<typeof statusPayload>;
export type TelemetryPayload = z.output<typeof telemetryPayload>;
export type CameraStatePayload = z.output<typeof cameraStatePayload>;
export type AlertPayload = z.output<typeof alertPayload>;
export type ClipManifestPayload = z.output<typeof clipManifestPayload>;
export type CommandPayload = z.output<typeof commandPayload>;
export type VerbName = keyof typeof verbArgs;
export type ReplyPayload = z.output<typeof replyPayload>;
export type ChatPayload = z.output<typeof chatPayload>;
export type BridgeStatePayload = z.output<typeof bridgeStatePayload>;
export type AckPayload = z.output<typeof ackPayload>;
export type InboxEntryPayload = z.output<typeof inboxEntryPayload>;
export type InboxAudience = InboxEntryPayload['audience'];
export type InboxClip = NonNullable<InboxEntryPayload['clip']>;
export type Role = z.output<typeof role>;
export type UpdatePayload = z.output<typeof updatePayload>;

/** A clip in the hub's archive, as the console's HTTP API lists it (GET /api/clips). */
export interface ArchivedClip {
  device: string;
  clipId: string;
  sizeBytes: number;
  sha256: string | null;
  durationMs: number | null;
  startAt: number | null;
  cameras: string[];
  /** When the hub had it complete (its clock). */
  storedAt: number;
  acknowledged: boolean;
}
