// Panic clips on disk, under dataDir/clips: `{id}.mp4` beside `{id}.json` (its record: what the
// manifest says, and how far delivery got). Every write is a temp file, fsync, rename, fsync of the
// directory, so a power cut leaves either the old file or the new one, never half a clip that looks whole.
//
// Limits: a byte quota and an age limit. Delivered clips go first, oldest first. Undelivered clips are
// kept even over quota: the console has not seen them. Only when the filesystem itself is in danger
// (free space below clips.minFreeBytes) are undelivered clips deleted too, oldest first, and a
// `clip-store` alert is raised (and cleared once there is room again).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { syncDir, writeDurably } from '../files.js';
import type { Service } from '../lifecycle/service.js';
import type { AlertPayload } from '../mqtt/contract.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import { topics } from '../mqtt/topics.js';

export type ClipTrigger = 'button' | 'mqtt' | 'cli';

export interface ClipRecord {
  id: string;
  cameras: string[];
  trigger: ClipTrigger;
  relatedClipId?: string | undefined;
  sizeBytes: number;
  sha256: string;
  durationMs: number;
  /** Wall-clock range the video covers. */
  startAt: number;
  endAt: number;
  /** When the clip was stored: the order of the quota and age limits. */
  keptAt: number;
  chunkBytes: number;
  chunks: number;
  /** The hub acknowledged the manifest. */
  manifestAcked: boolean;
  /** Chunks 0 … ackedChunks-1 were acknowledged by the hub. */
  ackedChunks: number;
  delivered: boolean;
  deliveredAt?: number | undefined;
}

export interface NewClip {
  id: string;
  /** A finished MP4 (in tempDir, so the rename stays on one filesystem). */
  path: string;
  cameras: string[];
  trigger: ClipTrigger;
  relatedClipId?: string | undefined;
  durationMs: number;
  startAt: number;
  endAt: number;
}

export type ClipStoreLimits = Pick<
  Config['clips'],
  'quotaBytes' | 'maxAgeDays' | 'minFreeBytes' | 'chunkBytes'
>;

export interface ClipStoreHooks {
  /** The disk is in danger (raised) or has room again (cleared): publish a `clip-store` alert. */
  diskDanger?(state: 'raised' | 'cleared', message: string): void;
  /** Free bytes on the filesystem holding `dir` (tests make a small disk). */
  freeBytes?(dir: string): Promise<number>;
}

const AGE_CHECK_MS = 10 * 60 * 1000;

export interface ClipStoreDeps {
  dataDir: string;
  limits: ClipStoreLimits;
  log: Logger;
  hooks?: ClipStoreHooks;
}

export class ClipStore implements Service {
  readonly name = 'clip-store';
  readonly dir: string;
  private readonly records = new Map<string, ClipRecord>();
  private timer: NodeJS.Timeout | undefined;
  private danger = false;
  private overQuotaLogged = false;
  private enforcing: Promise<void> = Promise.resolve();
  private writing: Promise<void> = Promise.resolve();
  private readonly removed = new Set<string>();
  private opened = false;

  private readonly hooks: ClipStoreHooks;

  constructor(private readonly deps: ClipStoreDeps) {
    this.hooks = deps.hooks ?? {};
    this.dir = join(deps.dataDir, 'clips');
  }

  /** Where clip sources write unfinished files (never looked at as clips). */
  get tempDir(): string {
    return join(this.dir, 'tmp');
  }

  async start(): Promise<void> {
    if (this.opened) return;
    await mkdir(this.tempDir, { recursive: true, mode: 0o750 });
    // Leftovers of a power cut: unfinished clips and records that were never renamed into place.
    for (const entry of await readdir(this.tempDir)) await rm(join(this.tempDir, entry), { force: true });
    for (const entry of await readdir(this.dir)) {
      if (entry.endsWith('.tmp')) await rm(join(this.dir, entry), { force: true });
    }
    for (const entry of await readdir(this.dir)) {
      if (!entry.endsWith('.json')) continue;
      try {
        const record = JSON.parse(await readFile(join(this.dir, entry), 'utf8')) as ClipRecord;
        if (!(await exists(this.filePath(record.id)))) {
          // keep() writes the record before it renames the video in: a kill in between leaves this.
          await rm(join(this.dir, entry), { force: true });
          this.deps.log.warn(
            { clipId: record.id },
            'clip record without its video (the daemon stopped while keeping it); removed',
          );
          continue;
        }
        this.records.set(record.id, record);
      } catch (error) {
        this.deps.log.warn({ file: join(this.dir, entry), err: error }, 'clip record unreadable; skipped');
      }
    }
    this.opened = true;
    this.timer = setInterval(() => void this.enforce(), AGE_CHECK_MS).unref();
    const undelivered = this.list().filter((record) => !record.delivered).length;
    this.deps.log.info({ dir: this.dir, clips: this.records.size, undelivered }, 'clip store opened');
    await this.enforce();
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    return this.enforcing;
  }

  healthy(): boolean {
    return this.opened;
  }

  /** Every clip, oldest first. */
  list(): ClipRecord[] {
    return [...this.records.values()].sort((a, b) => a.keptAt - b.keptAt || a.id.localeCompare(b.id));
  }

  get(id: string): ClipRecord | undefined {
    return this.records.get(id);
  }

  filePath(id: string): string {
    return join(this.dir, `${id}.mp4`);
  }

  /** Bytes of all clips kept. */
  totalBytes(): number {
    let total = 0;
    for (const record of this.records.values()) total += record.sizeBytes;
    return total;
  }

  /**
   * Take a finished MP4 into the store: fsync and hash it, write its record, then rename the video into
   * place. The record goes first so that a video in place always has its record: a kill between the two
   * leaves a record without a video, which start() drops (the clip was not finished, and the journal of
   * clips in progress, journal.ts, says so to the console), never a finished video nobody delivers.
   */
  async keep(clip: NewClip): Promise<ClipRecord> {
    const { sizeBytes, sha256 } = await hashFile(clip.path);
    const handle = await open(clip.path, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    const record: ClipRecord = {
      id: clip.id,
      cameras: clip.cameras,
      trigger: clip.trigger,
      relatedClipId: clip.relatedClipId,
      sizeBytes,
      sha256,
      durationMs: Math.round(clip.durationMs),
      // Whole ms, as the manifest's schema wants them (a source may compute fractions).
      startAt: Math.round(clip.startAt),
      endAt: Math.round(clip.endAt),
      keptAt: Date.now(),
      chunkBytes: this.deps.limits.chunkBytes,
      chunks: Math.ceil(sizeBytes / this.deps.limits.chunkBytes),
      manifestAcked: false,
      ackedChunks: 0,
      delivered: false,
    };
    await this.writeRecord(record);
    await rename(clip.path, this.filePath(clip.id));
    await syncDir(this.dir);
    this.records.set(record.id, record);
    this.deps.log.info({ clipId: record.id, sizeBytes, sha256, chunks: record.chunks }, 'clip stored');
    await this.enforce();
    return record;
  }

  /** Change a clip's record (delivery progress), durably. */
  async update(
    id: string,
    patch: Partial<Pick<ClipRecord, 'manifestAcked' | 'ackedChunks' | 'delivered' | 'deliveredAt'>>,
  ) {
    const record = this.records.get(id);
    if (!record) return;
    Object.assign(record, patch);
    await this.writeRecord(record);
  }

  /** Apply the quota, the age limit and the free-space floor. Runs one at a time. */
  enforce(): Promise<void> {
    this.enforcing = this.enforcing
      .then(() => this.enforceNow())
      .catch((error: unknown) => {
        this.deps.log.error({ err: error, dir: this.dir }, 'clip store limits could not be applied');
      });
    return this.enforcing;
  }

  private async enforceNow(): Promise<void> {
    const maxAgeMs = this.deps.limits.maxAgeDays * 24 * 3600 * 1000;
    const now = Date.now();
    let total = this.totalBytes();
    for (const record of this.list()) {
      if (!record.delivered) continue;
      const overQuota = total > this.deps.limits.quotaBytes;
      const tooOld = now - record.keptAt > maxAgeMs;
      if (!overQuota && !tooOld) continue;
      await this.remove(record, overQuota ? 'quota' : 'age');
      total -= record.sizeBytes;
    }
    if (total > this.deps.limits.quotaBytes) {
      if (!this.overQuotaLogged) {
        this.deps.log.warn(
          { totalBytes: total, quotaBytes: this.deps.limits.quotaBytes },
          'clip store over quota with undelivered clips only: keeping them until they are delivered',
        );
      }
      this.overQuotaLogged = true;
    } else {
      this.overQuotaLogged = false;
    }

    let free = await (this.hooks.freeBytes ?? freeBytesOf)(this.dir);
    if (free >= this.deps.limits.minFreeBytes) {
      if (this.danger) {
        this.danger = false;
        this.hooks.diskDanger?.('cleared', `disk has room again: ${free} bytes free`);
      }
      return;
    }
    const removed: string[] = [];
    const victims = [...this.list().filter((r) => r.delivered), ...this.list().filter((r) => !r.delivered)];
    for (const record of victims) {
      if (free >= this.deps.limits.minFreeBytes) break;
      await this.remove(record, 'disk in danger');
      if (!record.delivered) removed.push(record.id);
      free += record.sizeBytes;
    }
    const message =
      removed.length > 0
        ? `disk nearly full (${free} bytes free, floor ${this.deps.limits.minFreeBytes}): deleted undelivered clips ${removed.join(', ')}`
        : `disk nearly full (${free} bytes free, floor ${this.deps.limits.minFreeBytes}); no clip left to delete`;
    if (!this.danger || removed.length > 0) {
      this.deps.log.error(
        { free, minFreeBytes: this.deps.limits.minFreeBytes, removed },
        'clip store: disk in danger',
      );
      this.hooks.diskDanger?.('raised', message.slice(0, 500));
    }
    this.danger = free < this.deps.limits.minFreeBytes || removed.length > 0;
  }

  private async remove(record: ClipRecord, reason: string): Promise<void> {
    this.records.delete(record.id);
    this.removed.add(record.id);
    // The record first: a video without a record is an orphan, a record without a video is skipped.
    await rm(join(this.dir, `${record.id}.json`), { force: true });
    await rm(this.filePath(record.id), { force: true });
    this.deps.log.info(
      { clipId: record.id, delivered: record.delivered, sizeBytes: record.sizeBytes, reason },
      'clip deleted',
    );
  }

  /** Record writes go one at a time: two renames of one temp file would trip over each other. */
  private writeRecord(record: ClipRecord): Promise<void> {
    const text = `${JSON.stringify(record)}\n`;
    const write = this.writing.then(async () => {
      if (this.removed.has(record.id)) return; // deleted meanwhile: do not bring its record back
      await writeDurably(join(this.dir, `${record.id}.json`), text);
    });
    this.writing = write.catch(() => undefined);
    return write;
  }
}

export async function hashFile(path: string): Promise<{ sizeBytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sizeBytes, sha256: hash.digest('hex') };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function freeBytesOf(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

/**
 * ClipStore's diskDanger hook for the daemon: the `clip-store` alert (QoS 1), one id per daemon run,
 * `critical` when raised and `info` when cleared.
 */
export function clipStoreAlerts(deps: {
  site: string;
  device: string;
  publisher: Publisher & { stamp: Stamper };
}): NonNullable<ClipStoreHooks['diskDanger']> {
  return (state, message) => {
    const stamp = deps.publisher.stamp();
    deps.publisher.publish(
      topics.alert(deps.site, deps.device),
      {
        ...stamp,
        id: `clip-store-${stamp.bootId.slice(0, 8)}`,
        device: deps.device,
        kind: 'clip-store',
        severity: state === 'raised' ? 'critical' : 'info',
        state,
        message,
      } satisfies AlertPayload,
      { qos: 1 },
    );
  };
}
