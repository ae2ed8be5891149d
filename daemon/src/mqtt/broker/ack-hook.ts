// Acknowledgements of the hub's alert inbox as one of the broker's stamping hooks (publish-policy.ts):
// a publish on `outpost/v1/{site}/inbox/{audience}/{device}/{key}/ack` is stamped with who sent it
// (the authenticated identity) and the broker's clock (ack-stamp.ts), and is an event (never retained).
// The hub's inbox (console/inbox.ts) records the first one in its entry.
import { stampAck } from '../ack-stamp.js';
import { inboxAckTarget } from '../topics.js';
import type { StampHook, StampInput, StampOutcome } from './publish-policy.js';

export class AckHook implements StampHook {
  readonly name = 'ack';
  readonly clearsRetain = true;

  constructor(private readonly site: string) {}

  owns(topic: string): boolean {
    return inboxAckTarget(this.site, topic) !== undefined;
  }

  stamp({ topic, payload, identity, now }: StampInput): StampOutcome {
    const stamped = stampAck(this.site, topic, payload, identity, now);
    if (!stamped) return { ok: false, reason: 'not an acknowledgement topic' };
    return stamped.ok ? { ok: true, payload: stamped.payload } : stamped;
  }
}
