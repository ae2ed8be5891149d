// The last N chat messages per channel, kept by the broker that stamps them and published, retained,
// on `outpost/v1/{site}/chat/{channel}/history`: a reader that subscribes gets the recent history at
// once, and since it is a retained message it lives in the broker's on-disk store across restarts.
import { z } from 'zod';
import { chatPayload, type ChatPayload } from './contract.js';
import { topics } from './topics.js';

const historyPayload = z.array(chatPayload);

export class ChatHistory {
  private readonly recent = new Map<string, ChatPayload[]>();

  constructor(
    private readonly site: string,
    private readonly limit: number,
  ) {}

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
      if (channel && parsed.success) this.recent.set(channel, parsed.data.slice(-this.limit));
    }
  }

  /** Filter that matches every channel's history topic. */
  get pattern(): string {
    return topics.chatHistory(this.site, '+');
  }

  /** Add a stamped message; returns the retained publish that carries the channel's new history. */
  append(channel: string, message: ChatPayload): { topic: string; payload: Buffer } {
    const list = this.recent.get(channel) ?? [];
    list.push(message);
    if (list.length > this.limit) list.splice(0, list.length - this.limit);
    this.recent.set(channel, list);
    return { topic: topics.chatHistory(this.site, channel), payload: Buffer.from(JSON.stringify(list)) };
  }
}
