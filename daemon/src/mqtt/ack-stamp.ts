// Acknowledgements of the hub's alert inbox are stamped by the broker that receives them, as chat is:
// who acknowledged is the authenticated identity and when is the broker's clock, whatever the payload
// says. A console publishes `{}` (or `{"note": "…"}`) on `P/inbox/{audience}/{device}/{key}/ack`; every
// reader, and the hub's inbox (console/inbox.ts), receives `{ by, role, at, note? }`; an acknowledgement
// made at the operations centre arrives through the bridge as `{ by: centre, operator, … }`.
import { TextDecoder } from 'node:util';
import { ackInPayload, type AckPayload } from './contract.js';
import type { Identity } from './identities.js';
import { inboxAckTarget } from './topics.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The site bridge's identity on the site broker (bridge/bridge.ts): what comes down from the operations
 * centre is published as it. Only it may name a centre operator in an acknowledgement.
 */
export const CENTRE_IDENTITY = 'centre';

export type StampedAck = { ok: true; payload: Buffer; ack: AckPayload } | { ok: false; reason: string };

/** undefined when `topic` is not an acknowledgement; else the stamped payload or why it was refused. */
export function stampAck(
  site: string,
  topic: string,
  payload: Buffer | string,
  identity: Identity,
  now: number,
): StampedAck | undefined {
  if (!inboxAckTarget(site, topic)) return undefined;
  let raw: unknown = {};
  try {
    const text = typeof payload === 'string' ? payload : strictUtf8.decode(payload);
    // An empty payload (mosquitto_pub -n) acknowledges too.
    if (text.trim() !== '') raw = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'an acknowledgement is {} or {"note": "…"} in UTF-8 JSON' };
  }
  const parsed = ackInPayload.safeParse(raw);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues[0]?.message ?? 'bad acknowledgement' };
  const { note, operator } = parsed.data;
  if (operator !== undefined && identity.name !== CENTRE_IDENTITY)
    return { ok: false, reason: 'only the bridge from the operations centre names a centre operator' };
  const ack: AckPayload = {
    by: identity.name,
    role: identity.role,
    at: now,
    ...(note === undefined ? {} : { note }),
    ...(operator === undefined ? {} : { operator }),
  };
  return { ok: true, payload: Buffer.from(JSON.stringify(ack)), ack };
}
