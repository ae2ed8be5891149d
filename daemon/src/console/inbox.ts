// The hub's alert inbox: every alert any box publishes becomes one entry, retained on
// `P/inbox/{audience}/{device}/{key}` (contract.ts inboxEntryPayload), updated when the alert is
// cleared or escalated and when someone acknowledges it (`…/ack`, stamped by the broker). Consoles
// subscribe to `P/inbox/#` and get the whole open inbox on connect: a reload, a hub restart and a
// console that was closed when the alert came all see the same state. The entries are kept in
// dataDir/console/inbox.json (written atomically, at most every 200 ms, and at stop) and published
// again at start; past `keep` entries the oldest acknowledged (then cleared, then oldest) go, and their
// retained message is removed.
import { createHash } from 'node:crypto';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeDurably } from '../files.js';
import type { Service } from '../lifecycle/service.js';
import {
  ackPayload,
  alertPayload,
  inboxEntryPayload,
  jsonOf,
  type AlertPayload,
  type InboxAudience,
  type InboxClip,
  type InboxEntryPayload,
} from '../mqtt/contract.js';
import { INBOX_SAFE_KEY, inboxAckTarget, inboxAudience, sitePrefix, topics } from '../mqtt/topics.js';
import type { LocalBus } from './local-bus.js';

const WRITE_DELAY_MS = 200;
const CLIP_PROGRESS_MS = 250;

const WAITING: InboxClip = {
  state: 'waiting',
  have: 0,
  of: null,
  sizeBytes: null,
  sha256: null,
  durationMs: null,
};

/** Panic and its clip's failure concern everyone on the site; the rest is box health for operators. */
export function audienceOf(kind: AlertPayload['kind']): InboxAudience {
  return inboxAudience(kind);
}

/** A topic-safe segment for an alert id: the id itself when it is one, else a hash of it. */
export function inboxKey(id: string): string {
  return INBOX_SAFE_KEY.test(id) ? id : `h-${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

export interface InboxOptions {
  site: string;
  dataDir: string;
  keep: number;
  bus: LocalBus;
  log: Logger;
  now?: () => number;
}

export class AlertInbox implements Service {
  readonly name = 'alert inbox';
  private readonly entries = new Map<string, InboxEntryPayload>();
  private readonly file: string;
  private running = false;
  private subscribed = false;
  private writeTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly now: () => number;
  private readonly clipPublishedAt = new Map<string, number>();
  private readonly clipTimers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly options: InboxOptions) {
    this.file = join(options.dataDir, 'console', 'inbox.json');
    this.now = options.now ?? (() => Date.now());
  }

  async start(): Promise<void> {
    await this.load();
    this.running = true;
    // The broker's retained store may have lost what this file has (or the reverse after a crash
    // between the two): the file is the inbox, so every entry is published again.
    for (const entry of this.entries.values()) this.publish(entry);
    if (!this.subscribed) {
      this.subscribed = true;
      const { site, bus } = this.options;
      bus.subscribeLocal(`${sitePrefix(site)}/+/alert`, (topic, payload) => {
        if (this.running) this.onAlert(topic, payload);
      });
      bus.subscribeLocal(`${sitePrefix(site)}/inbox/+/+/+/ack`, (topic, payload) => {
        if (this.running) this.onAck(topic, payload);
      });
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const timer of this.clipTimers.values()) clearTimeout(timer);
    this.clipTimers.clear();
    clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
    await this.save();
  }

  healthy(): boolean {
    return this.running;
  }

  /** Whether the panic alert of `clipId` (from `device`) has been acknowledged: its clip may go first. */
  clipAcknowledged(device: string, clipId: string): boolean {
    return this.panicOf(device, clipId)?.ack != null;
  }

  /**
   * The clip archive's news about the clip of a panic alert: progress, stored, failed. Progress is
   * published at most every 250 ms per entry (the last state always goes out).
   */
  updateClip(device: string, clipId: string, clip: InboxClip): void {
    const entry = this.panicOf(device, clipId);
    if (!entry || !this.running) return;
    const id = this.id(entry.device, entry.key);
    const updated = { ...entry, clip, updatedAt: this.now() };
    this.entries.set(id, updated);
    const urgent = clip.state !== 'receiving';
    const last = this.clipPublishedAt.get(id) ?? 0;
    clearTimeout(this.clipTimers.get(id));
    if (urgent || this.now() - last >= CLIP_PROGRESS_MS) {
      this.clipPublishedAt.set(id, this.now());
      this.publish(updated);
    } else {
      this.clipTimers.set(
        id,
        setTimeout(() => {
          this.clipPublishedAt.set(id, this.now());
          const latest = this.entries.get(id);
          if (latest && this.running) this.publish(latest);
        }, CLIP_PROGRESS_MS),
      );
    }
    if (urgent) this.scheduleWrite();
  }

  private panicOf(device: string, clipId: string): InboxEntryPayload | undefined {
    const direct = this.entries.get(this.id(device, inboxKey(clipId)));
    if (direct?.alert.kind === 'panic') return direct;
    return [...this.entries.values()].find(
      (entry) => entry.device === device && entry.alert.kind === 'panic' && entry.alert.clipId === clipId,
    );
  }

  /** The entries, newest first (tests, the log). */
  list(): InboxEntryPayload[] {
    return [...this.entries.values()].sort((a, b) => b.firstAt - a.firstAt);
  }

  private id(device: string, key: string): string {
    return `${device}/${key}`;
  }

  private onAlert(topic: string, payload: Buffer): void {
    const device = topic.split('/').at(-2) ?? '';
    const parsed = alertPayload.safeParse(jsonOf(payload));
    // A chat channel named `alert` matches P/+/alert too: anything not an alert of its own box is skipped.
    if (!parsed.success || parsed.data.device !== device) {
      if (!topic.includes('/chat/'))
        this.options.log.warn({ topic }, 'inbox: not an alert of that box; skipped');
      return;
    }
    const alert = parsed.data;
    const key = inboxKey(alert.id);
    const id = this.id(device, key);
    const known = this.entries.get(id);
    const now = this.now();
    if (known && known.alert.bootId === alert.bootId && known.alert.seq === alert.seq) return; // QoS 1 duplicate
    const entry: InboxEntryPayload = known
      ? { ...known, alert, updatedAt: now }
      : {
          key,
          audience: audienceOf(alert.kind),
          device,
          alert,
          firstAt: now,
          updatedAt: now,
          ack: null,
          ...(alert.kind === 'panic' && alert.clipId ? { clip: WAITING } : {}),
        };
    this.entries.delete(id);
    this.entries.set(id, entry);
    this.options.log.info({ device, alert: alert.id, kind: alert.kind, state: alert.state }, 'inbox: alert');
    this.publish(entry);
    this.prune();
    this.scheduleWrite();
  }

  private onAck(topic: string, payload: Buffer): void {
    const target = inboxAckTarget(this.options.site, topic);
    if (!target) return;
    const ack = ackPayload.safeParse(jsonOf(payload));
    if (!ack.success) return; // the broker stamps every acknowledgement; anything else is not one
    const entry = this.entries.get(this.id(target.device, target.key));
    if (!entry || entry.audience !== target.audience) {
      this.options.log.warn(
        { topic, by: ack.data.by },
        'inbox: acknowledgement of an unknown alert; ignored',
      );
      return;
    }
    if (entry.ack) return; // the first acknowledgement stands
    const updated = { ...entry, ack: ack.data, updatedAt: this.now() };
    this.entries.set(this.id(target.device, target.key), updated);
    this.options.log.info(
      { device: entry.device, alert: entry.alert.id, by: ack.data.by },
      'inbox: acknowledged',
    );
    this.publish(updated);
    this.scheduleWrite();
  }

  private publish(entry: InboxEntryPayload): void {
    this.options.bus.publishLocal(
      topics.inboxEntry(this.options.site, entry.audience, entry.device, entry.key),
      entry,
      {
        qos: 1,
        retain: true,
      },
    );
  }

  /** Over `keep`: acknowledged first, then cleared, then any; oldest first within each. */
  private prune(): void {
    const over = this.entries.size - this.options.keep;
    if (over <= 0) return;
    const rank = (entry: InboxEntryPayload): number =>
      entry.ack ? 0 : entry.alert.state === 'cleared' ? 1 : 2;
    const victims = [...this.entries.entries()]
      .sort(([, a], [, b]) => rank(a) - rank(b) || a.firstAt - b.firstAt)
      .slice(0, over);
    for (const [id, entry] of victims) {
      this.entries.delete(id);
      this.options.bus.publishLocal(
        topics.inboxEntry(this.options.site, entry.audience, entry.device, entry.key),
        Buffer.alloc(0),
        { qos: 1, retain: true },
      );
    }
    this.options.log.info(
      { removed: victims.length, keep: this.options.keep },
      'inbox: oldest entries removed',
    );
  }

  private scheduleWrite(): void {
    if (this.writeTimer) return;
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined;
      void this.save();
    }, WRITE_DELAY_MS);
  }

  private save(): Promise<void> {
    const snapshot = JSON.stringify({ version: 1, entries: [...this.entries.values()] });
    this.writing = this.writing.then(async () => {
      try {
        await writeDurably(this.file, snapshot, { makeFolder: true });
      } catch (error) {
        this.options.log.error({ err: error, file: this.file }, 'inbox not saved');
      }
    });
    return this.writing;
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return; // no inbox yet
    }
    try {
      const raw = JSON.parse(text) as { entries?: unknown[] };
      for (const item of raw.entries ?? []) {
        const entry = inboxEntryPayload.safeParse(item);
        if (entry.success) this.entries.set(this.id(entry.data.device, entry.data.key), entry.data);
      }
      this.options.log.info({ entries: this.entries.size }, 'inbox loaded');
    } catch (error) {
      this.options.log.error(
        { err: error, file: this.file },
        'inbox file unreadable; starting empty (kept as .bad)',
      );
      await rename(this.file, `${this.file}.bad`).catch(() => undefined);
    }
  }
}
