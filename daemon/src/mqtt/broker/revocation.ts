// What follows a change of the identities (SIGHUP, or a file changed while the daemon was down):
// connected clients whose identity was removed or changed role are disconnected, and persisted
// sessions are checked against who owns their client id now. A session outlives its connection (its
// subscriptions stay and messages keep queueing for it), so: identity gone → the whole session is
// forgotten (subscriptions, queue, in-flight QoS 2 state, will); still there but no longer allowed some
// of its filters (a demoted role) → those subscriptions are removed. What is already queued is judged
// again at delivery (read-policy.ts).
import type { Logger } from 'pino';
import type { Identity } from '../identities.js';
import type { AedesClient } from './aedes.js';
import type { BrokerCounters } from './counters.js';
import { forgetSession, persistedSubscriptions, type OpenStore } from './persistence.js';

export interface RevocationDeps {
  counters: BrokerCounters;
  log: Logger;
  lookup: (name: string) => Identity | undefined;
  clientIdOwner: (clientId: string) => string | undefined;
  identityOf: (client: AedesClient) => Identity | undefined;
  /** The client is now `identity`, or nobody. */
  reassign: (client: AedesClient, identity: Identity | undefined) => void;
  /** It receives nothing more (read-policy.ts). */
  silence: (client: AedesClient) => void;
  maySubscribe: (identity: Identity, filter: string) => boolean;
}

export class Revocation {
  constructor(private readonly deps: RevocationDeps) {}

  /** Disconnect each of `clients` whose identity is gone or has another role now. */
  disconnectChanged(clients: readonly AedesClient[]): void {
    const { log } = this.deps;
    for (const client of clients) {
      const identity = this.deps.identityOf(client);
      if (!identity) continue;
      const now = this.deps.lookup(identity.name);
      if (now && now.role === identity.role) continue;
      log.info(
        { identity: identity.name, role: identity.role, now: now?.role ?? null, client: client.id },
        'identity revoked or changed: disconnecting',
      );
      // Until it is gone, it receives nothing; its last will is judged by what the identity is now
      // (none for a removed identity). It may reconnect under its new role.
      this.deps.silence(client);
      this.deps.reassign(client, now);
      client.close();
    }
  }

  /** Apply the identities as they are now to every persisted session in `store`. */
  async checkPersistedSessions(store: OpenStore): Promise<void> {
    const { db, persistence } = store;
    const { counters, log } = this.deps;
    try {
      for (const [clientId, filters] of await persistedSubscriptions(db)) {
        const owner = this.deps.clientIdOwner(clientId);
        const identity = owner === undefined ? undefined : this.deps.lookup(owner);
        if (!identity) {
          await forgetSession(db, persistence, clientId);
          counters.forgottenSessions += 1;
          log.info({ client: clientId }, 'persisted session of a removed identity forgotten');
          continue;
        }
        const refused = filters.filter((filter) => !this.deps.maySubscribe(identity, filter));
        if (refused.length === 0) continue;
        await persistence.removeSubscriptions({ id: clientId }, refused);
        log.info(
          { client: clientId, identity: identity.name, role: identity.role, filters: refused },
          'persisted subscriptions no longer allowed removed',
        );
      }
    } catch (error) {
      log.error({ err: error }, 'persisted sessions not checked against the identities');
    }
  }
}
