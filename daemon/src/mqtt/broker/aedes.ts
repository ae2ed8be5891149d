// Aedes, and every place the broker reaches past its public API. The one importer of `aedes`: the
// other rooms use its public hooks (authenticate, authorizePublish, authorizeSubscribe,
// authorizeForward, published, preConnect) through the types exported here. Each reach into Aedes's
// private state is a function below, with the Aedes 1.2 behaviour it relies on pinned by
// test/mqtt/aedes.test.ts, so an Aedes upgrade that changes one fails there first.
import type { EventEmitter } from 'node:events';
import { Aedes, type AedesOptions, type Client, type PublishPacket, type Subscription } from 'aedes';
import mqttPacket from 'mqtt-packet';

export type { Client as AedesClient, PublishPacket, Subscription };
export type { Aedes };

/**
 * Aedes's own guards, set on purpose (docs/mqtt.md lists them):
 * - maxInflightInbound 100: QoS 2 publishes one client may hold awaiting PUBREL; our clients publish
 *   QoS 1, so 100 is generous and bounds the dedup store on disk.
 * - maxTopicLevels 16: contract v1 topics have at most 8 levels.
 * - drainTimeout 20 s: a subscriber that stops reading is dropped instead of stalling delivery to all.
 * - queueLimit 64: packets a client may send before its CONNECT is authenticated (scrypt takes ~50 ms).
 * - connectTimeout 10 s: a socket that sends no CONNECT is closed.
 * - heartbeatInterval 5 s: Aedes sweeps the last wills of clients of an earlier broker run (the daemon
 *   was killed with them connected) every 4 heartbeats: 20 s after a crash instead of 4 min. A client
 *   that reconnects before the sweep replaces its will, so a quick reconnect is not announced offline.
 * No keepaliveLimit: Aedes refuses keep-alive 0 (and longer ones) with CONNACK 6, which MQTT 3.1.1 does
 * not define. Every keep-alive is accepted; TCP keep-alive on each socket finds dead peers.
 */
const AEDES_GUARDS = {
  maxInflightInbound: 100,
  maxTopicLevels: 16,
  drainTimeout: 20_000,
  queueLimit: 64,
  connectTimeout: 10_000,
  heartbeatInterval: 5000,
} as const;

export type AedesHooks = Pick<
  AedesOptions,
  'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward' | 'published'
>;

/** Listeners for what Aedes reports; each must be set, or an 'error' would throw. */
export interface AedesEvents {
  error: (error: unknown) => void;
  clientError: (client: Client, error: Error) => void;
}

/** A started Aedes with our guards and hooks. */
export async function createAedes(
  options: { id: string; persistence: AedesOptions['persistence'] } & AedesHooks,
  events: AedesEvents,
): Promise<Aedes> {
  // mqtt-packet (Aedes's and MQTT.js's writer) otherwise builds, at its first write, a cache of 65,536
  // two-byte Buffers for message ids: ~6.4 MB of heap and 65k objects for every garbage collection to
  // walk, in a daemon that has a few hundred ids in flight. It then allocates the two bytes per write.
  mqttPacket.writeToStream.cacheNumbers = false;
  const aedes = await Aedes.createBroker({ ...AEDES_GUARDS, ...options });
  keepDeliveryAsynchronous(aedes);
  // Aedes emits 'error' for persistence failures and stale-will publishing; without a listener that
  // would throw and take the daemon down.
  (aedes as unknown as EventEmitter).on('error', events.error);
  aedes.on('clientError', events.clientError);
  aedes.on('connectionError', events.clientError);
  return aedes;
}

/**
 * Aedes drops, per client, every message whose broker counter is not above the highest it has already
 * delivered to that client (`dedupe` in aedes/lib/client.js, meant for a message both queued and
 * delivered live while a persistent session reconnects). With a persistence that answers
 * asynchronously the counters do not reach delivery in order: a QoS 1 message whose queueing for a
 * persistent subscriber took longer than a later message's was dropped as a "duplicate" and never
 * delivered live (clip chunks missing until the receiver asked again; an alert overtaken by QoS 0
 * telemetry was lost). Each client gets this instead, which never calls a message a duplicate:
 * delivery is at least once, and a message published while a persistent session reconnects can
 * arrive twice, which QoS 1 allows (consumers dedupe by the id in the payload).
 */
const NO_DEDUPE: object = new Proxy(Object.create(null) as object, { get: () => 0, set: () => true });

/** Called from authenticate() once a client is accepted, before any of its subscriptions exist. */
export function prepareClient(client: Client): void {
  (client as unknown as { duplicates: object }).duplicates = NO_DEDUPE;
}

/** Messages waiting on Aedes's bus for a delivery slot (mqemitter's `length`). */
export function busBacklog(aedes: Aedes): number {
  return messageBus(aedes).length;
}

/** Aedes keeps its connected clients by id; its type declarations leave the map out. */
export function connectedClient(aedes: Aedes, clientId: string): Client | undefined {
  return (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[clientId];
}

export function connectedClients(aedes: Aedes): Client[] {
  return Object.values((aedes as unknown as { clients: Record<string, Client> }).clients);
}

/**
 * A last will as Aedes holds it during authenticate() (`client._will`, the CONNECT's will, not yet
 * stored) and as aedes-persistence-level stores it (the same object, given `brokerId` and `clientId`
 * by putWill).
 */
export interface StoredWill {
  topic?: string;
  clientId?: string;
  /** The id of the broker run the client was connected to. */
  brokerId?: string;
  /** Set by authentication.ts: the identity that left this will. */
  outpostIdentity?: string;
}

/** The will of a client being authenticated: Aedes stores it at CONNECT without authorizePublish. */
export function pendingWill(client: Client): StoredWill | undefined {
  return (client as unknown as { _will?: StoredWill | null })._will ?? undefined;
}

interface MessageBus {
  /** Messages waiting for a delivery slot (mqemitter's public `length`). */
  readonly length: number;
  on(topic: string, handler: (packet: unknown, done: () => void) => void): void;
}

function messageBus(aedes: Aedes): MessageBus {
  return (aedes as unknown as { mq: MessageBus }).mq;
}

/**
 * mqemitter (Aedes's message bus) starts the next queued message from the completion of the previous
 * one. A message nobody subscribes to completes synchronously, so when its queue is full (a slow
 * subscriber under a flood) and that subscriber leaves, the backlog drains by recursion until
 * "Maximum call stack size exceeded" kills the daemon (seen in bench:broker; mcollina/mqemitter#204,
 * unreleased). One handler on every topic breaks such a chain: it completes at once, except that past
 * 500 completions in one turn of the event loop it completes on the next turn.
 */
function keepDeliveryAsynchronous(aedes: Aedes): void {
  let thisTurn = 0;
  messageBus(aedes).on('#', (_packet, done) => {
    thisTurn += 1;
    if (thisTurn === 1) setImmediate(() => (thisTurn = 0));
    if (thisTurn < 500) done();
    else setImmediate(done);
  });
}
