// The topic map of contract v1: every topic string the daemon uses is built here and nowhere else.
// Payload schemas for each topic live in contract.ts; docs/topics.md documents both.

export const TOPIC_VERSION = 'v1';

/** `outpost/v1/{site}`: the root of everything on one site. */
export function sitePrefix(site: string): string {
  return `outpost/${TOPIC_VERSION}/${site}`;
}

/** `outpost/v1/{site}/{device}`: one box's own prefix. */
export function devicePrefix(site: string, device: string): string {
  return `${sitePrefix(site)}/${device}`;
}

export const topics = {
  /** Retained; `online` / `offline` (the last will). */
  status: (site: string, device: string) => `${devicePrefix(site, device)}/status`,
  telemetry: (site: string, device: string) => `${devicePrefix(site, device)}/telemetry`,
  /** Retained camera state. */
  cameraState: (site: string, device: string, camera: string) =>
    `${devicePrefix(site, device)}/camera/${camera}/state`,
  alert: (site: string, device: string) => `${devicePrefix(site, device)}/alert`,
  clipManifest: (site: string, device: string, clipId: string) =>
    `${devicePrefix(site, device)}/clip/${clipId}`,
  /** Chunk n (0-based) of a clip: the clip's raw bytes, not JSON (docs/topics.md). */
  clipChunk: (site: string, device: string, clipId: string, n: number) =>
    `${devicePrefix(site, device)}/clip/${clipId}/chunk/${n}`,
  /** Retained: the box's update state (contract.ts updatePayload). */
  update: (site: string, device: string) => `${devicePrefix(site, device)}/update`,
  cmd: (site: string, device: string, verb: string) => `${devicePrefix(site, device)}/cmd/${verb}`,
  cmdAll: (site: string, device: string) => `${devicePrefix(site, device)}/cmd/#`,
  reply: (site: string, device: string, verb: string) => `${devicePrefix(site, device)}/reply/${verb}`,
  chat: (site: string, channel: string) => `${sitePrefix(site)}/chat/${channel}`,
  /** Retained: the hub's link to the operations centre (on the site broker and the central one). */
  bridge: (site: string, device: string) => `${devicePrefix(site, device)}/bridge`,
  /** Retained by the hub: the channel's last messages, as an array of chat payloads. */
  chatHistory: (site: string, channel: string) => `${sitePrefix(site)}/chat/${channel}/history`,
  /** Retained by the hub: one alert of its inbox (contract.ts inboxEntryPayload). */
  inboxEntry: (site: string, audience: string, device: string, key: string) =>
    `${sitePrefix(site)}/inbox/${audience}/${device}/${key}`,
  /** A console acknowledges that alert here; the broker stamps who. */
  inboxAck: (site: string, audience: string, device: string, key: string) =>
    `${sitePrefix(site)}/inbox/${audience}/${device}/${key}/ack`,
  /**
   * At the operations centre's broker only: `operator` acknowledges that alert. The centre's ACL lets
   * each console account write only under its own name; the site's bridge carries it down as an
   * acknowledgement naming that operator (docs/bridge.md).
   */
  inboxAckBy: (site: string, audience: string, device: string, key: string, operator: string) =>
    `${sitePrefix(site)}/inbox/${audience}/${device}/${key}/ack/${operator}`,
} as const;

/** An alert id that is a safe topic level is its own inbox key (console/inbox.ts hashes any other). */
export const INBOX_SAFE_KEY = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** Panic and its clip's failure concern everyone on the site (staff too); the rest is box health. */
export function inboxAudience(kind: string): 'site' | 'console' {
  return kind === 'panic' || kind === 'clip-failed' ? 'site' : 'console';
}

/** The inbox entry an acknowledgement topic names, when it is exactly `P/inbox/{audience}/{device}/{key}/ack`. */
export function inboxAckTarget(
  site: string,
  topic: string,
): { audience: 'site' | 'console'; device: string; key: string } | undefined {
  const prefix = `${sitePrefix(site)}/inbox/`;
  if (!topic.startsWith(prefix)) return undefined;
  const [audience, device, key, ack, ...rest] = topic.slice(prefix.length).split('/');
  if (ack !== 'ack' || rest.length > 0 || !device || !key) return undefined;
  if (audience !== 'site' && audience !== 'console') return undefined;
  return { audience, device, key };
}

const chatPrefixes = new Map<string, string>();

/** The chat channel a topic names, when it is exactly `outpost/v1/{site}/chat/{channel}`. */
export function chatChannel(site: string, topic: string): string | undefined {
  // Asked for every publish the broker authorizes: the prefix is built once per site.
  let prefix = chatPrefixes.get(site);
  if (prefix === undefined) chatPrefixes.set(site, (prefix = `${sitePrefix(site)}/chat/`));
  if (!topic.startsWith(prefix)) return undefined;
  const channel = topic.slice(prefix.length);
  return channel.length > 0 && !channel.includes('/') ? channel : undefined;
}
