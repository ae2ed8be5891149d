// The last N chat messages per channel, kept by the broker that stamps them and published, retained,
// on `outpost/v1/{site}/chat/{channel}/history`: a reader that subscribes gets the recent history at
// once, and since it is a retained message it lives in the broker's on-disk store across restarts.
//
// Each history publish rewrites the whole list (up to N stamped messages of up to 2 KiB of text) in
// the store and sends it to every history reader, so it is throttled per channel: a message on a
// quiet channel updates the history at once, a burst at most once per `intervalMs` (the last update
// carries the burst's end). At most `maxChannels` channels are kept. A message opening one more takes
// the place of the channel quiet for longest, if that one has been quiet for `idleMs` (its retained
// history is removed with it); otherwise it is refused. Bound: maxChannels × one history per
// interval, whatever the message rate.
import { z } from 'zod';
import { chatPayload, type ChatPayload } from './contract.js';
import { topics } from './topics.js';

const historyPayload = z.array(chatPayload);

export type PublishHistory = (packet: { topic: string; payload: Buffer }) => Promise<void>;

interface Channel {
  messages: ChatPayload[];
  /**
   * When its last message came, on the monotonic clock (`now`): a wall-clock step must neither make a
   * busy channel look idle for months nor every channel look busy. A channel loaded from the retained
   * history is dated by its last stamp's age on the wall clock at load (never in the future).
   */
  activeAt: number;
  /** When its history was last published (performance.now()), -Infinity if never. */
  publishedAt: number;
  /** A trailing publish is scheduled. */
  timer: NodeJS.Timeout | undefined;
}

export interface ChatHistoryOptions {
  site: string;
  /** Messages kept per channel. */
  limit: number;
  publish: PublishHistory;
  maxChannels: number;
  intervalMs: number;
  /** How long a channel must have been quiet before a new channel may take its place. */
  idleMs: number;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
}

export class ChatHistory {
  private readonly channels = new Map<string, Channel>();
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly options: ChatHistoryOptions) {}

  private now(): number {
    return this.options.now?.() ?? performance.now();
  }

  /** Take back what the retained history topics held before a restart. */
  async load(retained: AsyncIterable<{ topic: string; payload: Buffer | string }>): Promise<void> {
    for await (const packet of retained) {
      const channel = packet.topic.split('/').at(-2);
      let raw: unknown;
      try {
        raw = JSON.parse(packet.payload.toString());
      } catch {
        continue; // not ours (an admin's junk): start that channel's history afresh
      }
      const parsed = historyPayload.safeParse(raw);
      if (channel && parsed.success && this.channels.size < this.options.maxChannels) {
        const messages = parsed.data.slice(-this.options.limit);
        this.channels.set(channel, {
          messages,
          activeAt: this.now() - Math.max(0, Date.now() - (messages.at(-1)?.at ?? 0)),
          publishedAt: -Infinity,
          timer: undefined,
        });
      }
    }
  }

  /** Filter that matches every channel's history topic. */
  get pattern(): string {
    return topics.chatHistory(this.options.site, '+');
  }

  get size(): number {
    return this.channels.size;
  }

  /**
   * Make room for a message on `channel`: a known channel, a free place, or the place of the channel
   * quiet for longest if it has been quiet for `idleMs` (`evicted` names it; its retained history is
   * removed). Otherwise `ok` is false and `reason` says why.
   */
  admit(channel: string): { ok: true; evicted?: string } | { ok: false; reason: string } {
    if (this.channels.has(channel) || this.channels.size < this.options.maxChannels) return { ok: true };
    let quietest: [string, Channel] | undefined;
    for (const candidate of this.channels) {
      if (!quietest || candidate[1].activeAt < quietest[1].activeAt) quietest = candidate;
    }
    const [name, entry] = quietest!;
    const quietMs = this.now() - entry.activeAt;
    if (quietMs < this.options.idleMs) {
      return {
        ok: false,
        reason: `a new chat channel beyond broker.chatChannels (${this.options.maxChannels}), and the quietest one (${name}) had a message ${Math.round(quietMs / 1000)} s ago, less than broker.chatChannelIdleSeconds (${this.options.idleMs / 1000})`,
      };
    }
    clearTimeout(entry.timer);
    this.channels.delete(name);
    // An empty retained payload removes the retained history (MQTT 3.1.1 §3.3.1.3).
    this.send(topics.chatHistory(this.options.site, name), Buffer.alloc(0));
    return { ok: true, evicted: name };
  }

  /** Add a stamped message (to a channel `admit()` let in); its history is published now or soon. */
  append(channel: string, message: ChatPayload): void {
    let entry = this.channels.get(channel);
    if (!entry) {
      entry = { messages: [], activeAt: this.now(), publishedAt: -Infinity, timer: undefined };
      this.channels.set(channel, entry);
    }
    entry.activeAt = this.now();
    const list = entry.messages;
    list.push(message);
    if (list.length > this.options.limit) list.splice(0, list.length - this.options.limit);
    if (this.stopped || entry.timer) return;
    const wait = entry.publishedAt + this.options.intervalMs - performance.now();
    if (wait <= 0) this.publishNow(channel, entry);
    else entry.timer = setTimeout(() => this.publishNow(channel, entry), wait);
  }

  /** Publish what is still pending and wait for every history publish to be stored. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const [channel, entry] of this.channels) {
      if (entry.timer) this.publishNow(channel, entry);
    }
    await Promise.all(this.inFlight);
  }

  private publishNow(channel: string, entry: Channel): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.publishedAt = performance.now();
    this.send(topics.chatHistory(this.options.site, channel), Buffer.from(JSON.stringify(entry.messages)));
  }

  private send(topic: string, payload: Buffer): void {
    const sent = this.options
      .publish({ topic, payload })
      .catch(() => undefined)
      .finally(() => this.inFlight.delete(sent));
    this.inFlight.add(sent);
  }
}
