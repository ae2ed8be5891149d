// The panic path. A trigger (the button, `cmd/clip` from the console, `outpost clip` on the box)
// publishes the `alert` at QoS 1 first, synchronously, before any disk or encoder work; then the clip
// is captured (source.ts), kept (store.ts) and delivered (delivery.ts) in the background.
//
// A second press while a clip is still being recorded LINKS: it gets its own clip id, its own alert and
// its own clip, and both its alert and its manifest name the clip in progress as `relatedClipId`. Every
// press therefore reaches the console as an alert of its own, and no video is dropped (the clips may
// overlap). Extending the first clip instead would fold a second alarm into the first.
//
// Every clip is written down as in progress (journal.ts) just before its alert goes out, and forgotten
// once it is kept or its `clip-failed` alert was acknowledged. At start, a clip the last run left in progress is
// settled: kept in the store already (a kill after the keep) → delivered as usual; otherwise it is lost
// with the daemon's memory, and a `clip-failed` alert says so. The console always gets an answer.
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import type { AlertPayload } from '../mqtt/contract.js';
import { topics } from '../mqtt/topics.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import type { ClipDelivery } from './delivery.js';
import { ClipJournal, type InProgressClip } from './journal.js';
import type { ClipSource } from './source.js';
import type { ClipStore, ClipTrigger } from './store.js';

export interface PanicSettings {
  site: string;
  device: string;
  preRollSeconds: number;
  postRollSeconds: number;
  /** Cameras in a clip when the trigger names none. */
  cameras: string[];
}

export interface PanicResult {
  clipId: string;
  /** When the alert was handed to the uplink. */
  alertAt: number;
  cameras: string[];
  relatedClipId?: string;
}

/** The `clip-failed` reason for a clip the daemon was making when it stopped (docs/clips.md). */
export const STOPPED_DURING_CLIP =
  'the daemon stopped while the clip was being cut (killed, crashed or lost power); the video it was cutting from was in memory and is gone';

/** How long the clip capture waits for the hub to acknowledge the alert before it starts anyway. */
const ALERT_HEAD_START_MS = 50;

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** `20261124T191028Z-3fa2c1`: sortable, readable, unique enough, a valid topic segment. */
export function newClipId(at: number): string {
  const stamp = new Date(at)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/** What the panic path tells the rest of the box (the LED). */
export interface PanicEvents {
  alertSent?(clipId: string): void;
  /** The hub acknowledged the alert `ms` after the press (/metrics: outpost_panic_alert_seconds). */
  alertAcked?(trigger: ClipTrigger, ms: number): void;
}

export interface PanicDeps {
  settings: PanicSettings;
  publisher: Publisher & { stamp: Stamper; publishAcked?(topic: string, payload: object): Promise<void> };
  source: ClipSource;
  store: ClipStore;
  delivery: ClipDelivery;
  log: Logger;
  events?: PanicEvents;
}

export class Panic implements Service {
  readonly name = 'panic';
  private readonly recording = new Map<string, Promise<void>>();
  private abort = new AbortController();
  private running = false;
  private readonly journal: ClipJournal;

  private readonly settings: PanicSettings;
  private readonly publisher: Publisher & {
    stamp: Stamper;
    publishAcked?(topic: string, payload: object): Promise<void>;
  };
  private readonly source: ClipSource;
  private readonly store: ClipStore;
  private readonly delivery: ClipDelivery;
  private readonly log: Logger;
  private readonly events: PanicEvents;

  constructor(deps: PanicDeps) {
    this.settings = deps.settings;
    this.publisher = deps.publisher;
    this.source = deps.source;
    this.store = deps.store;
    this.delivery = deps.delivery;
    this.log = deps.log;
    this.events = deps.events ?? {};
    // Beside the clips it speaks for, so that one data dir holds both.
    this.journal = new ClipJournal(deps.store.dir, deps.log);
  }

  /** Start after the store (settling asks it which clips were kept) and the uplink. */
  async start(): Promise<void> {
    this.abort = new AbortController();
    // Every clip being cut listens on this one signal (per camera, while it waits for the post-roll):
    // more than Node's default of 10 at once is normal during a burst of presses, not a leak.
    setMaxListeners(0, this.abort.signal);
    await this.journal.start();
    this.settleLeftovers();
    this.running = true;
  }

  /** Raise the alert now and record the clip in the background. `at` is the press time. */
  trigger(trigger: ClipTrigger, options: { cameras?: string[]; at?: number } = {}): PanicResult {
    const at = options.at ?? Date.now();
    const clipId = newClipId(at);
    const cameras = options.cameras && options.cameras.length > 0 ? options.cameras : this.settings.cameras;
    const relatedClipId = [...this.recording.keys()].at(-1);
    const alert: AlertPayload = {
      ...this.publisher.stamp(),
      id: clipId,
      device: this.settings.device,
      kind: 'panic',
      severity: 'critical',
      state: 'raised',
      message: `panic (${trigger})${relatedClipId ? `, again during clip ${relatedClipId}` : ''}`,
      clipId,
      cameras,
      trigger,
      ...(relatedClipId ? { relatedClipId } : {}),
    };
    const clip: InProgressClip = {
      clipId,
      at,
      trigger,
      cameras,
      ...(relatedClipId ? { relatedClipId } : {}),
    };
    // Written down first (with the kernel in ~0.1 ms; fsynced in the background): no kill can leave the
    // alert out and the box without a record of its clip (journal.ts).
    if (this.running) void this.journal.begin(clip);
    const topic = topics.alert(this.settings.site, this.settings.device);
    // QoS 1 through the uplink's on-disk store. The capture starts once the hub acknowledged the alert,
    // or after ALERT_HEAD_START_MS at the latest (hub away): spawning a recorder blocks the event loop
    // for a few ms, which must not sit between the press and the alert's bytes on the socket.
    const acknowledged = this.publisher.publishAcked
      ? this.publisher.publishAcked(topic, alert).then(
          () => this.events.alertAcked?.(trigger, Date.now() - at),
          (error: unknown) => {
            this.log.error({ err: error, clipId }, 'panic alert could not be published');
          },
        )
      : (this.publisher.publish(topic, alert, { qos: 1 }), Promise.resolve());
    const headStart = Promise.race([acknowledged, delay(ALERT_HEAD_START_MS)]);
    const alertAt = Date.now();
    this.log.warn({ clipId, trigger, cameras, relatedClipId, ms: alertAt - at }, 'panic: alert published');
    this.events.alertSent?.(clipId);
    if (this.running) {
      const done = headStart.then(() => this.record(clip)).finally(() => this.recording.delete(clipId));
      this.recording.set(clipId, done);
    } else {
      this.log.error({ clipId }, 'panic while the clip service is stopped: alert sent, no clip');
      this.clipFailed(clip, 'the clip service is stopping');
    }
    return { clipId, alertAt, cameras, ...(relatedClipId ? { relatedClipId } : {}) };
  }

  /** Clips being recorded now. */
  recordingClips(): string[] {
    return [...this.recording.keys()];
  }

  async stop(): Promise<void> {
    this.running = false;
    // The source cuts the post-roll short on abort and muxes what it has; that clip is kept and delivered.
    this.abort.abort();
    await Promise.all(this.recording.values());
    await this.journal.stop();
  }

  healthy(): boolean {
    return this.running;
  }

  private async record(clip: InProgressClip): Promise<void> {
    const { clipId, trigger, cameras, at, relatedClipId } = clip;
    try {
      const captured = await this.source.capture({
        clipId,
        preMs: this.settings.preRollSeconds * 1000,
        postMs: this.settings.postRollSeconds * 1000,
        cameras,
        at,
        outPath: join(this.store.tempDir, `${clipId}.mp4`),
        signal: this.abort.signal,
      });
      await this.store.keep({
        id: clipId,
        path: captured.path,
        cameras: captured.cameras ?? cameras,
        trigger,
        relatedClipId,
        durationMs: captured.durationMs,
        startAt: captured.startAt,
        endAt: captured.endAt,
      });
      // Delivery first: the entry's removal (an fsync of the folder) need not hold the clip up; a kill
      // in between leaves an entry whose clip is in the store, which the next start delivers.
      this.delivery.enqueue(clipId);
      await this.journal.finish(clipId);
    } catch (error) {
      this.log.error({ err: error, clipId }, 'panic clip could not be made (the alert was sent)');
      this.clipFailed(clip, describeError(error));
    }
  }

  /**
   * The clips the last run was making when it stopped. One kept in the store was finished (the kill came
   * after its keep, before its entry was removed): delivery has it already. Any other is gone: its video
   * was in the pre-roll and the mux, in memory (a tmpfs that a power cut empties), so say so.
   */
  private settleLeftovers(): void {
    for (const clip of this.journal.leftovers()) {
      if (this.store.get(clip.clipId)) {
        this.log.info(
          { clipId: clip.clipId },
          'clip in progress when the daemon stopped had been kept; it is delivered as usual',
        );
        void this.journal.finish(clip.clipId);
        continue;
      }
      if (clip.failed !== undefined) {
        // Its clip-failed went out in the last run but was not acknowledged: send the same one again.
        this.log.warn(
          { clipId: clip.clipId },
          'clip-failed alert not acknowledged in the last run; sent again',
        );
        this.clipFailed(clip, clip.failed);
        continue;
      }
      this.log.error(
        { clipId: clip.clipId, at: clip.at, cameras: clip.cameras },
        'panic clip lost: the daemon stopped while it was being cut; telling the console (clip-failed)',
      );
      this.clipFailed(clip, STOPPED_DURING_CLIP);
    }
  }

  /**
   * Tell the console that no clip will follow the panic, and why, so it stops waiting for one. The
   * clip's in-progress entry keeps the reason and is removed once the hub acknowledged this alert: a
   * daemon stopped before then sends it again at its next start (the same alert; QoS 1 is at least once
   * anyway).
   */
  private clipFailed(clip: InProgressClip, reason: string): void {
    const { clipId, trigger, cameras } = clip;
    void this.journal.failed(clip, reason.slice(0, 500));
    const alert: AlertPayload = {
      ...this.publisher.stamp(),
      id: `${clipId}-failed`,
      device: this.settings.device,
      kind: 'clip-failed',
      severity: 'warning',
      state: 'raised',
      message: `no clip for panic ${clipId}: ${reason}`.slice(0, 500),
      clipId,
      cameras,
      trigger,
    };
    const topic = topics.alert(this.settings.site, this.settings.device);
    if (!this.publisher.publishAcked) {
      this.publisher.publish(topic, alert, { qos: 1 });
      void this.journal.finish(clipId);
      return;
    }
    // Not awaited: with the hub away the acknowledgement may not come in this run at all.
    void this.publisher.publishAcked(topic, alert).then(
      () => this.journal.finish(clipId),
      (error: unknown) =>
        this.log.warn(
          { err: error, clipId },
          'clip-failed alert not acknowledged; it is sent again at the next start',
        ),
    );
  }
}
