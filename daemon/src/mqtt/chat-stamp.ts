// Chat messages are stamped by the broker that receives them: the sender is the authenticated
// identity and the time is the broker's clock, whatever the payload claims (a `from` naming somebody
// else is overwritten). Invalid UTF-8, non-JSON or over-long texts are refused.
import { randomUUID } from 'node:crypto';
import { TextDecoder } from 'node:util';
import { chatInPayload, type ChatPayload } from './contract.js';
import type { Identity } from './identities.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export type Stamped = { ok: true; payload: Buffer; message: ChatPayload } | { ok: false; reason: string };

export function stampChat(payload: Buffer | string, identity: Identity, now: number): Stamped {
  let text: string;
  try {
    text = typeof payload === 'string' ? payload : strictUtf8.decode(payload);
  } catch {
    return { ok: false, reason: 'payload is not valid UTF-8' };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  // A bare line of text (mosquitto_pub -m "hello") is a message too.
  if (typeof raw !== 'object' || raw === null) raw = { text };
  const parsed = chatInPayload.safeParse(raw);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues[0]?.message ?? 'bad chat payload' };
  const message: ChatPayload = {
    id: parsed.data.id ?? randomUUID(),
    from: identity.name,
    role: identity.role,
    text: parsed.data.text,
    at: now,
  };
  return { ok: true, payload: Buffer.from(JSON.stringify(message)), message };
}
