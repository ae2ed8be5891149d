// What a client may receive: Aedes's authorizeSubscribe hook (a refused filter gets 0x80 in its
// SUBACK, the client stays connected) and authorizeForward, which runs for every message delivered to
// a client, live or replayed from its persisted queue. A persistent session's subscriptions and queue
// were made under the identity it had then, and the identity may have been demoted or removed since:
// each delivery passes the client's read scope as of now (acl.ts ReadScope, built once at CONNECT; one
// WeakMap lookup and a prefix comparison or two per delivery).
import type { Logger } from 'pino';
import { maySubscribe, ReadScope } from '../acl.js';
import type { Identity } from '../identities.js';
import type { AedesClient, AedesHooks, Forward } from './aedes.js';
import type { BrokerCounters } from './counters.js';
import { REFUSED_TOPIC } from './publish-policy.js';

export interface ReadPolicyDeps {
  site: string;
  counters: BrokerCounters;
  log: Logger;
  identityOf: (client: AedesClient) => Identity | undefined;
}

export class ReadPolicy {
  private readonly scopeOf = new WeakMap<AedesClient, ReadScope>();

  constructor(private readonly deps: ReadPolicyDeps) {}

  /** A client accepted at CONNECT as `identity`. */
  accepted(client: AedesClient, identity: Identity): void {
    this.scopeOf.set(client, ReadScope.of(identity, this.deps.site));
  }

  /** A client whose identity was revoked or changed: it receives nothing more until it is gone. */
  revoke(client: AedesClient): void {
    this.scopeOf.set(client, ReadScope.NOTHING);
  }

  /** Whether `identity` may hold a subscription to `filter` (for persisted sessions at a reload). */
  maySubscribe(identity: Identity, filter: string): boolean {
    return maySubscribe(identity, this.deps.site, filter);
  }

  hooks(): Pick<AedesHooks, 'authorizeSubscribe' | 'authorizeForward'> {
    const { counters, log } = this.deps;
    return {
      authorizeSubscribe: (client, subscription, done) => {
        // A filter holding U+0000 closes the connection [MQTT-4.7.3-2].
        if (subscription.topic.includes('\u0000')) {
          done(new Error('topic filter holds U+0000'), null);
          return;
        }
        const identity = this.deps.identityOf(client);
        if (identity && maySubscribe(identity, this.deps.site, subscription.topic)) {
          done(null, subscription);
          return;
        }
        counters.refusedSubscribe += 1;
        log.warn(
          { identity: identity?.name, role: identity?.role, client: client.id, topic: subscription.topic },
          'mqtt subscribe refused by ACL',
        );
        done(null, null); // SUBACK 0x80 for this filter; the client stays connected
      },
      // Aedes drops a message refused here from the client's persisted queue too.
      authorizeForward: this.forward,
    };
  }

  /** authorizeForward: the packet, or null when the client may not receive it (now). */
  readonly forward: Forward = (client, packet) => {
    if (packet.topic !== REFUSED_TOPIC && this.scopeOf.get(client)?.allows(packet.topic)) {
      this.deps.counters.messagesSent += 1;
      return packet;
    }
    if (packet.topic !== REFUSED_TOPIC) this.deps.counters.refusedDeliveries += 1;
    return null;
  };
}
