// What a publish may do once its client is authenticated: Aedes's authorizePublish hook. In order:
// the client's publish rate (over it: disconnected), the ACL for its identity (acl.ts; refused:
// acknowledged and dropped, MQTT 3.1.1 [MQTT-3.3.5-2]), the retain flag cleared on events (commands,
// stamped messages), then the stamping hooks. Also the wills Aedes publishes with no client behind
// them (left by a crash of an earlier run), judged again by the identity that left them.
//
// STAMPING HOOKS. Some publishes are rewritten before anyone receives them, their sender stamped from
// the authenticated identity and never taken from the payload (DESIGN.md): chat (chat-hook.ts) is one.
// Another (an alert acknowledgement, say) is one more `policy.addStamp(hook)` in broker.ts, where the
// chat hook is registered, and a StampHook object:
//   name      for logs ('chat')
//   owns      whether the hook stamps publishes on a topic
//   refuse    optional: why an identity may not publish on one of its topics at all, beyond the ACL
//   clearsRetain  true for events, which must not fire again for every new subscriber
//   stamp     the payload as receivers will see it ({ ok: true, payload }), or { ok: false, reason }:
//             refused (acknowledged, dropped, logged and counted as refusedPublish)
// `owns` and `refuse` are asked once per identity and topic and the answer is cached with the ACL's,
// so the hot path costs one Map lookup however many hooks there are; `stamp` runs for each message on
// a topic its hook owns, never for the others. At most one hook owns a topic (the first registered).
import type { Logger } from 'pino';
import { mayPublish } from '../acl.js';
import type { Identity } from '../identities.js';
import { topics } from '../topics.js';
import type { AedesClient, AedesHooks, PublishPacket, StoredWill } from './aedes.js';
import type { BrokerCounters } from './counters.js';

/** What a stamping hook is given for one message. */
export interface StampInput {
  topic: string;
  payload: Buffer;
  /** The authenticated sender: the only source of who sent it. */
  identity: Identity;
  /** The broker's wall clock, ms since the epoch. */
  now: number;
}

export type StampOutcome = { ok: true; payload: Buffer } | { ok: false; reason: string };

/** A rewrite of the publishes on some topics, stamped from the sender's identity (see the header). */
export interface StampHook {
  readonly name: string;
  /** Events: their retain flag is cleared (a retained one would fire again for each new subscriber). */
  readonly clearsRetain: boolean;
  owns(topic: string): boolean;
  refuse?(identity: Identity, topic: string): string | undefined;
  stamp(input: StampInput): StampOutcome;
}

/** Refused publishes are re-addressed here and dropped: nobody may subscribe to `$outpost/…`. */
export const REFUSED_TOPIC = '$outpost/refused';

/** Topics remembered per identity by the decision cache; past it the cache starts again. */
const DECISION_CACHE_TOPICS = 256;

/** What to do with a publish by one identity on one topic (cached). */
interface Decision {
  refusal: string | undefined;
  clearRetain: boolean;
  hook: StampHook | undefined;
}

export interface PublishPolicyDeps {
  site: string;
  /** broker.limits.maxPublishRate */
  maxPublishRate: number;
  counters: BrokerCounters;
  log: Logger;
  /** Who a connected client is (authentication.ts). */
  identityOf: (client: AedesClient) => Identity | undefined;
  /** An identity by name, as it is now. */
  lookup: (name: string) => Identity | undefined;
  /** The identity that owns a client id, by its namespace. */
  clientIdOwner: (clientId: string) => string | undefined;
  /** This run's broker id: a will carrying another one was left by a crash of an earlier run. */
  runId: () => string | undefined;
}

export class PublishPolicy {
  private readonly hooks: StampHook[] = [];
  private readonly limiterOf = new WeakMap<AedesClient, RateLimiter>();
  /**
   * Decisions per identity and topic: a client publishes on a handful of topics, over and over. Keyed
   * by the Identity object, which a reload replaces, so a changed role is never answered from the
   * cache. Bounded by DECISION_CACHE_TOPICS per identity.
   */
  private decisions = new WeakMap<Identity, Map<string, Decision>>();

  constructor(private readonly deps: PublishPolicyDeps) {}

  /** Register a stamping hook (see the header). */
  addStamp(hook: StampHook): void {
    this.hooks.push(hook);
    this.decisions = new WeakMap();
  }

  /** Unregister it (the broker stopped); publishes on its topics are no longer stamped. */
  removeStamp(hook: StampHook): void {
    const index = this.hooks.indexOf(hook);
    if (index >= 0) this.hooks.splice(index, 1);
    this.decisions = new WeakMap();
  }

  /** A client accepted at CONNECT: its publish rate starts here. */
  accepted(client: AedesClient): void {
    this.limiterOf.set(client, new RateLimiter(this.deps.maxPublishRate));
  }

  /** Why `identity` may not publish on `topic`, or undefined when it may. */
  refusal(identity: Identity, topic: string): string | undefined {
    return this.decide(identity, topic).refusal;
  }

  hook(): Pick<AedesHooks, 'authorizePublish'> {
    return { authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done) };
  }

  private authorizePublish(
    client: AedesClient | null,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    const brokerId = (packet as StoredWill).brokerId;
    if (!client || (brokerId !== undefined && brokerId !== this.deps.runId())) {
      this.authorizeStaleWill(packet);
      done(null);
      return;
    }
    const { counters, log } = this.deps;
    const identity = this.deps.identityOf(client);
    if (!identity) {
      done(new Error('publish from an unauthenticated client'));
      return;
    }
    // Aedes publishes a departing client's will through this hook too: that is not the client's rate.
    if (!client.closed && this.limiterOf.get(client)?.take() === false) {
      // Publishes already read from the socket arrive here too: count and log the client once.
      if (this.limiterOf.delete(client)) {
        counters.limitDisconnects += 1;
        log.warn(
          { identity: identity.name, client: client.id },
          'mqtt client over its publish rate: disconnected',
        );
      }
      done(new Error('publish rate limit exceeded'));
      return;
    }
    const decision = this.decide(identity, packet.topic);
    if (decision.refusal) {
      counters.refusedPublish += 1;
      log.warn(
        {
          identity: identity.name,
          role: identity.role,
          client: client.id,
          topic: packet.topic,
          reason: decision.refusal,
        },
        'mqtt publish refused; dropped',
      );
      refuseInPlace(packet);
      done(null);
      return;
    }
    if (decision.clearRetain) packet.retain = false;
    const hook = decision.hook;
    if (hook) {
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      const stamped = hook.stamp({ topic: packet.topic, payload, identity, now: Date.now() });
      if (stamped.ok) {
        packet.payload = stamped.payload;
      } else {
        counters.refusedPublish += 1;
        log.warn(
          { identity: identity.name, topic: packet.topic, hook: hook.name, reason: stamped.reason },
          `${hook.name} message refused; dropped`,
        );
        refuseInPlace(packet);
      }
    }
    done(null);
  }

  /**
   * A will left by a client of an earlier broker run (the daemon was killed with it connected), which
   * Aedes publishes with no client. It was checked at CONNECT, but the identity may be gone or changed
   * since, and an admin may leave a will anywhere: after a crash the broker speaks only for the identity
   * that left it, on its own status, and only if that identity still exists and may publish there.
   */
  private authorizeStaleWill(packet: PublishPacket): void {
    const will = packet as PublishPacket & StoredWill;
    // Wills stored before the identity was recorded: the client id's owner (ids are bound to identities).
    const name = will.outpostIdentity ?? this.deps.clientIdOwner(will.clientId ?? '');
    const identity = name === undefined ? undefined : this.deps.lookup(name);
    const ownStatus = identity && topics.status(this.deps.site, identity.name) === packet.topic;
    if (identity && ownStatus && !this.refusal(identity, packet.topic)) {
      this.deps.log.info(
        { identity: identity.name, client: will.clientId, topic: packet.topic },
        'last will of a client of an earlier broker run published',
      );
      return;
    }
    this.deps.counters.refusedPublish += 1;
    this.deps.log.warn(
      {
        identity: name ?? null,
        client: will.clientId,
        topic: packet.topic,
        reason: identity ? "not the identity's own status" : 'identity gone',
      },
      'last will of a client of an earlier broker run refused; dropped',
    );
    refuseInPlace(packet);
  }

  private decide(identity: Identity, topic: string): Decision {
    let known = this.decisions.get(identity);
    if (!known) this.decisions.set(identity, (known = new Map<string, Decision>()));
    const cached = known.get(topic);
    if (cached) return cached;
    const decision = this.decideAfresh(identity, topic);
    if (known.size >= DECISION_CACHE_TOPICS) known.clear();
    known.set(topic, decision);
    return decision;
  }

  private decideAfresh(identity: Identity, topic: string): Decision {
    const refused = (refusal: string): Decision => ({ refusal, clearRetain: false, hook: undefined });
    if (!mayPublish(identity, this.deps.site, topic)) return refused('not allowed by the ACL');
    const hook = this.hooks.find((candidate) => candidate.owns(topic));
    if (identity.role !== 'admin') {
      // `+` matches an empty level: `…/chat/` would pass `P/chat/+` yet name no channel (and so escape
      // stamping). No contract v1 topic has an empty level.
      if (topic.split('/').includes('')) return refused('empty topic level');
      const refusal = hook?.refuse?.(identity, topic);
      if (refusal) return refused(refusal);
    }
    // Commands are events too: a retained one would fire again for every new subscriber.
    return { refusal: undefined, clearRetain: topic.includes('/cmd/') || hook?.clearsRetain === true, hook };
  }
}

function refuseInPlace(packet: { topic: string; retain: boolean }): void {
  packet.topic = REFUSED_TOPIC;
  packet.retain = false;
}

/**
 * A token bucket: `ratePerSecond` sustained, bursts up to twice that. `take()` is false when the
 * client has gone over; the broker then disconnects it.
 */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = ratePerSecond * 2;
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(
      this.ratePerSecond * 2,
      this.tokens + ((now - this.last) / 1000) * this.ratePerSecond,
    );
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
