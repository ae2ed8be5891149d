// Clip delivery over MQTT, through the uplink (so every message passes its on-disk store and survives a
// hub outage or a daemon restart): the manifest on `…/{device}/clip/{clipId}` (JSON), then the clip's
// raw bytes in chunks on `…/{device}/clip/{clipId}/chunk/{n}`, all QoS 1. At most
// clips.inFlightChunks chunks wait for the hub's PUBACK at any time, so a long outage holds a few
// chunks in the uplink's store, not whole clips. Progress (manifest acknowledged, the acknowledged
// prefix of chunks) is kept in the clip's record; after a restart delivery resumes from there
// (chunks in flight at the crash may arrive twice: QoS 1 allows it and the receiver keys by index).
// `delivered` means the hub has everything; a console with a persistent session gets it from the hub,
// and can ask for chunks again with `cmd/clip-chunks`.
import { open, type FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Service } from '../lifecycle/service.js';
import type { ClipManifestPayload } from '../mqtt/contract.js';
import { topics } from '../mqtt/topics.js';
import type { ClipRecord, ClipStore } from './store.js';

export interface ClipChannel {
  /** QoS 1; resolves on the hub's PUBACK. */
  publishAcked(topic: string, payload: Buffer | object): Promise<void>;
  stamp(): { at: number; bootId: string; seq: number };
}

export interface DeliverySettings {
  site: string;
  device: string;
  inFlightChunks: number;
}

/** Persist the acknowledged prefix at most this often (plus at the end): one small fsync per second. */
const PROGRESS_EVERY_MS = 1000;

class Stopped extends Error {}

export interface ClipDeliveryDeps {
  settings: DeliverySettings;
  store: ClipStore;
  channel: ClipChannel;
  log: Logger;
  events?: { delivered?(record: ClipRecord): void };
}

export class ClipDelivery implements Service {
  readonly name = 'clip-delivery';
  private readonly queue: string[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private stopped: Promise<never> = new Promise<never>(() => undefined);
  private stopNow: (() => void) | undefined;
  private current: string | undefined;

  private readonly events: { delivered?(record: ClipRecord): void };

  constructor(private readonly deps: ClipDeliveryDeps) {
    this.events = deps.events ?? {};
  }

  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    this.stopped = new Promise<never>((_, reject) => {
      this.stopNow = () => reject(new Stopped());
    });
    this.stopped.catch(() => undefined);
    for (const record of this.deps.store.list()) if (!record.delivered) this.queue.push(record.id);
    if (this.queue.length > 0) this.deps.log.info({ clips: this.queue }, 'resuming clip delivery');
    this.loop = this.run();
    return Promise.resolve();
  }

  /** Deliver a stored clip (after the ones already waiting). */
  enqueue(clipId: string): void {
    if (!this.queue.includes(clipId) && this.current !== clipId) this.queue.push(clipId);
    this.wake?.();
  }

  /** Clips not yet fully acknowledged by the hub, the one being sent first. */
  pendingClips(): string[] {
    return [...(this.current ? [this.current] : []), ...this.queue];
  }

  /** `cmd/clip-chunks`: publish these chunks again (a console missed them). Resolves once queued. */
  async resend(clipId: string, chunks: readonly number[]): Promise<{ clipId: string; chunks: number[] }> {
    const record = this.deps.store.get(clipId);
    if (!record) throw new Error(`no clip ${clipId} on this box (never made, or deleted)`);
    const wanted = [...new Set(chunks)].filter((n) => n >= 0 && n < record.chunks).sort((a, b) => a - b);
    const file = await open(this.deps.store.filePath(clipId), 'r');
    // In the background, with the same in-flight bound as a delivery.
    void (async () => {
      try {
        if (wanted.length === 0 || chunks.length === 0) await this.publishManifest(record);
        await this.sendChunks(record, file, wanted, () => undefined);
      } catch (error) {
        if (!(error instanceof Stopped))
          this.deps.log.warn({ err: error, clipId }, 'clip chunk resend failed');
      } finally {
        await file.close();
      }
    })();
    this.deps.log.info({ clipId, chunks: wanted.length }, 'resending clip chunks on request');
    return { clipId, chunks: wanted };
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopNow?.();
    this.wake?.();
    await this.loop;
  }

  healthy(): boolean {
    return this.running;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const clipId = this.queue.shift();
      if (clipId === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      this.current = clipId;
      try {
        await this.deliver(clipId);
      } catch (error) {
        if (error instanceof Stopped) break;
        this.deps.log.error({ err: error, clipId }, 'clip delivery failed; will retry');
        this.queue.push(clipId);
        await Promise.race([new Promise((resolve) => setTimeout(resolve, 5000)), this.stopped]).catch(
          () => undefined,
        );
      } finally {
        this.current = undefined;
      }
    }
  }

  private async deliver(clipId: string): Promise<void> {
    const record = this.deps.store.get(clipId);
    if (!record || record.delivered) return;
    const began = Date.now();
    if (!record.manifestAcked) {
      await this.publishManifest(record);
      await this.deps.store.update(clipId, { manifestAcked: true });
    }
    const file = await open(this.deps.store.filePath(clipId), 'r');
    try {
      const acked = new Set<number>();
      let prefix = record.ackedChunks;
      let savedAt = Date.now();
      const wanted = Array.from({ length: record.chunks - prefix }, (_, i) => prefix + i);
      await this.sendChunks(record, file, wanted, (n) => {
        acked.add(n);
        while (acked.has(prefix)) acked.delete(prefix++);
        if (Date.now() - savedAt >= PROGRESS_EVERY_MS) {
          savedAt = Date.now();
          void this.deps.store.update(clipId, { ackedChunks: prefix });
        }
      });
    } finally {
      await file.close();
    }
    await this.deps.store.update(clipId, {
      ackedChunks: record.chunks,
      delivered: true,
      deliveredAt: Date.now(),
    });
    this.deps.log.info(
      { clipId, chunks: record.chunks, ms: Date.now() - began },
      'clip delivered to the hub',
    );
    this.events.delivered?.(record);
    await this.deps.store.enforce();
  }

  private async publishManifest(record: ClipRecord): Promise<void> {
    const manifest: ClipManifestPayload = {
      ...this.deps.channel.stamp(),
      clipId: record.id,
      device: this.deps.settings.device,
      cameras: record.cameras,
      sizeBytes: record.sizeBytes,
      sha256: record.sha256,
      durationMs: record.durationMs,
      chunkBytes: record.chunkBytes,
      chunks: record.chunks,
      startAt: record.startAt,
      endAt: record.endAt,
      trigger: record.trigger,
      ...(record.relatedClipId ? { relatedClipId: record.relatedClipId } : {}),
    };
    await this.guard(
      this.deps.channel.publishAcked(
        topics.clipManifest(this.deps.settings.site, this.deps.settings.device, record.id),
        manifest,
      ),
    );
  }

  /** Publish `chunks` of the clip with at most inFlightChunks unacknowledged; `acked(n)` as PUBACKs come. */
  private async sendChunks(
    record: ClipRecord,
    file: FileHandle,
    chunks: readonly number[],
    acked: (n: number) => void,
  ): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    for (const n of chunks) {
      while (inFlight.size >= this.deps.settings.inFlightChunks) await this.guard(Promise.race(inFlight));
      const length = Math.min(record.chunkBytes, record.sizeBytes - n * record.chunkBytes);
      const bytes = Buffer.alloc(length);
      await file.read(bytes, 0, length, n * record.chunkBytes);
      const topic = topics.clipChunk(this.deps.settings.site, this.deps.settings.device, record.id, n);
      const sent: Promise<void> = this.deps.channel.publishAcked(topic, bytes).then(() => {
        inFlight.delete(sent);
        acked(n);
      });
      inFlight.add(sent);
    }
    await this.guard(Promise.all(inFlight).then(() => undefined));
  }

  /** Wait for `promise` unless the delivery stops first (a PUBACK may never come in this run). */
  private guard<T>(promise: Promise<T>): Promise<T> {
    promise.catch(() => undefined);
    return Promise.race([promise, this.stopped]);
  }
}
