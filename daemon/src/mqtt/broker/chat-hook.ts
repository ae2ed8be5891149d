// Chat as one of the broker's stamping hooks (publish-policy.ts): a message on
// `outpost/v1/{site}/chat/{channel}` is stamped with its sender's identity and the broker's clock
// (chat-stamp.ts), is an event (never retained), and goes into its channel's history (chat-history.ts),
// which the broker publishes, retained, on `…/chat/{channel}/history`.
import type { Logger } from 'pino';
import { ChatHistory, type PublishHistory } from '../chat-history.js';
import { stampChat } from '../chat-stamp.js';
import { chatChannel } from '../topics.js';
import type { StampHook, StampInput, StampOutcome } from './publish-policy.js';

const CHANNEL_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** A channel's retained history is rewritten at most this often (chat-history.ts). */
const CHAT_HISTORY_INTERVAL_MS = 1000;

export interface ChatHookSettings {
  /** broker.chatHistory: messages kept per channel. */
  history: number;
  /** broker.chatChannels */
  channels: number;
  /** broker.chatChannelIdleSeconds */
  channelIdleSeconds: number;
}

export interface ChatHookDeps {
  site: string;
  settings: ChatHookSettings;
  /** Publishes (retained) and stores a channel's history. */
  publishHistory: PublishHistory;
  log: Logger;
}

export class ChatHook implements StampHook {
  readonly name = 'chat';
  readonly clearsRetain = true;
  private readonly site: string;
  private readonly log: Logger;
  private readonly history: ChatHistory;

  constructor({ site, settings, publishHistory, log }: ChatHookDeps) {
    this.site = site;
    this.log = log;
    this.history = new ChatHistory({
      site,
      limit: settings.history,
      publish: publishHistory,
      maxChannels: settings.channels,
      intervalMs: CHAT_HISTORY_INTERVAL_MS,
      idleMs: settings.channelIdleSeconds * 1000,
    });
  }

  /** The retained history topics to read back at start. */
  get historyPattern(): string {
    return this.history.pattern;
  }

  /** Take back the histories the store kept (retained) across a restart. */
  load(retained: AsyncIterable<{ topic: string; payload: Buffer | string }>): Promise<void> {
    return this.history.load(retained);
  }

  /** Publish (and store) the histories still waiting for their throttled update. */
  stop(): Promise<void> {
    return this.history.stop();
  }

  owns(topic: string): boolean {
    return chatChannel(this.site, topic) !== undefined;
  }

  refuse(_identity: unknown, topic: string): string | undefined {
    const channel = chatChannel(this.site, topic);
    return channel !== undefined && !CHANNEL_NAME.test(channel)
      ? 'a chat channel is 1–32 lowercase letters, digits or "-"'
      : undefined;
  }

  stamp({ topic, payload, identity, now }: StampInput): StampOutcome {
    const channel = chatChannel(this.site, topic) as string;
    const stamped = stampChat(payload, identity, now);
    if (!stamped.ok) return stamped;
    const room = this.history.admit(channel);
    if (!room.ok) return room;
    if (room.evicted !== undefined)
      this.log.info(
        { channel, evicted: room.evicted },
        'chat channel opened in the place of the quietest one; its history removed',
      );
    this.history.append(channel, stamped.message);
    return { ok: true, payload: stamped.payload };
  }
}
