// Aedes, and every place the broker reaches past its public API. The one importer of `aedes`: the
// other rooms use its public hooks (authenticate, authorizePublish, authorizeSubscribe,
// authorizeForward, published, preConnect) through the types exported here. Each reach into Aedes's
// private state is a function below, with the Aedes 1.2 behaviour it relies on pinned by
// test/mqtt/aedes.test.ts, so an Aedes upgrade that changes one fails there first.
import type { EventEmitter } from 'node:events';
import {
  Aedes,
  type AedesOptions,
  type AedesPublishPacket,
  type Client,
  type PublishPacket,
  type Subscription,
} from 'aedes';
import mqttPacket from 'mqtt-packet';
import { encodePublish, FastParser, GuardedConnection, type PacketParser } from './framing.js';

export type { Client as AedesClient, AedesPublishPacket, PublishPacket, Subscription };
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
 * - concurrency 1000: messages on their way to subscribers at once (Aedes's default is 100). Each
 *   delivery reports its completion on the next turn of the event loop (prepareClient), so this is
 *   also how many messages one turn can carry; past it they wait in mqemitter's queue, whose every
 *   release shifts the queue's arrays (8 % of the broker's CPU under bench:broker's flood at 100).
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
  concurrency: 1000,
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
  holdPubacksWrittenByAedes();
  const aedes = await Aedes.createBroker({ ...AEDES_GUARDS, ...options });
  keepDeliveryAsynchronous(aedes);
  rememberMatches(aedes);
  // Aedes emits 'error' for persistence failures and stale-will publishing; without a listener that
  // would throw and take the daemon down.
  (aedes as unknown as EventEmitter).on('error', events.error);
  aedes.on('clientError', events.clientError);
  aedes.on('connectionError', events.clientError);
  return aedes;
}

/**
 * What Aedes asks the broker before each delivery (the authorizeForward hook): the packet to send, or
 * null to drop it.
 */
export type Forward = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null;

/** A packet on its way to one client, as Aedes hands it to a subscription's delivery function. */
interface Outgoing extends PublishPacket {
  brokerId?: string | null;
  brokerCounter?: number;
  /** MQTT 5 no-local (Aedes carries it; 3.1.1 clients never set it). */
  nl?: boolean;
  clientId?: string;
}

/** What of Aedes's Client the delivery below uses (aedes/lib/client.js, 1.2). */
interface ClientInternals {
  id: string;
  clean: boolean;
  connecting: boolean;
  connected: boolean;
  conn: NodeJS.WritableStream;
  /** Filter → its subscription, with the QoS granted. */
  subscriptions: Record<string, { qos: number }>;
  /** The next packet id for a QoS > 0 message to this client (shared with Aedes's own resends). */
  _nextId: number;
  /** Calls back once the connection has drained (or fails it after drainTimeout). */
  waitForDrain(callback: (error: Error | null) => void): void;
  broker: {
    persistence: {
      outgoingUpdate(c: unknown, p: unknown): Promise<unknown>;
      outgoingClearMessageId(c: unknown, p: unknown): Promise<unknown>;
    };
  };
  /** The functions each new subscription captures to deliver to this client. */
  deliver0: (packet: Outgoing, done: () => void) => void;
  deliverQoS: (packet: Outgoing, done: () => void) => void;
  emit(event: 'error', error: Error): boolean;
}

/**
 * Called from authenticate() once a client is accepted, before any of its subscriptions exist (each
 * subscription captures the client's delivery functions when it is made): from then on, this client's
 * deliveries are ours instead of Aedes's `deliver0`/`deliverQoS`, for three reasons.
 *
 * - Overlapping subscriptions. A client whose subscriptions `a/#` (QoS 2) and `a/+` (QoS 1) both match
 *   a message is called once per subscription, and Aedes's `deliverQoS` looks the granted QoS up by
 *   the message's topic (`subscriptions[topic]`), not by the filter that matched: both copies went
 *   out at the message's QoS, or, with an exact `a/b` at QoS 0 beside `a/+` at QoS 1, both at QoS 0.
 *   [MQTT-3.3.5-1] asks for the maximum QoS of all the matching subscriptions: here, one copy at
 *   min(message QoS, highest granted QoS among the client's subscriptions that match its topic). The
 *   calls for one message come one after another, synchronously (mqemitter's parallel loop), so a
 *   call for the same message (broker id and counter) as the previous one is the same message again.
 * - No message called a duplicate. Aedes drops every message whose broker counter is not above the
 *   highest it delivered to that client (`dedupe`, for a message both queued and delivered live while
 *   a persistent session reconnects). With a persistence that answers asynchronously, counters do not
 *   reach delivery in order: a QoS 1 message whose queueing for a persistent subscriber took longer
 *   than a later message's was dropped and never delivered (clip chunks missing; an alert overtaken by
 *   QoS 0 telemetry lost). Here nothing is dropped for its counter: delivery is at least once, and a
 *   message published while a persistent session reconnects can arrive twice, which QoS 1 allows.
 * - DUP is not passed on ([MQTT-3.3.1-3]): Aedes copied the publisher's DUP flag to every subscriber.
 *
 * Each delivery is encoded into one buffer (encodePublish) and written to the connection at once; its
 * completion is reported to mqemitter on the next turn (all of a turn's together), or after the
 * connection drains when it is full (Aedes's drainTimeout still drops a client that never drains).
 */
export function prepareClient(client: Client, forward: Forward): void {
  const internals = client as unknown as ClientInternals;
  const subscriptions = followSubscriptions(internals);
  let lastId: string | null | undefined;
  let lastCounter = -1;
  const deliver = (packet: Outgoing, done: () => void): void => {
    if (packet.nl === true && packet.clientId === internals.id) {
      completeLater(done);
      return;
    }
    const counter = packet.brokerCounter ?? -1;
    if (counter === lastCounter && packet.brokerId === lastId && counter !== -1) {
      completeLater(done);
      return;
    }
    lastId = packet.brokerId;
    lastCounter = counter;
    const qos = Math.min(packet.qos, grantedQoS(subscriptions, packet.topic)) as 0 | 1 | 2;
    const toForward = forward(client, packet as AedesPublishPacket) as Outgoing | null;
    if (!toForward) {
      // Aedes drops a refused message from a persistent session's queue too.
      if (!internals.clean && qos > 0)
        internals.broker.persistence.outgoingClearMessageId(client, packet).then(noop, noop);
      completeLater(done);
      return;
    }
    if (qos === 0) {
      send(internals, toForward, 0, undefined, done);
      return;
    }
    const messageId = internals._nextId;
    internals._nextId = messageId >= 65535 ? 1 : messageId + 1;
    if (internals.clean || toForward.retain) {
      send(internals, toForward, qos, messageId, done);
      return;
    }
    // A persistent session: the message id is recorded with the queued message first, so the PUBACK
    // (or a resend after a reconnect) finds it (what Aedes's deliverQoS does).
    const stored = { ...toForward, qos, messageId, dup: false };
    const write = (): void => send(internals, toForward, qos, messageId, done);
    internals.broker.persistence.outgoingUpdate(client, stored).then(write, (error: unknown) => {
      internals.emit('error', error instanceof Error ? error : new Error(String(error)));
      done();
    });
  };
  internals.deliver0 = deliver;
  internals.deliverQoS = deliver;
}

interface Granted {
  filter: string;
  qos: number;
}

/**
 * The client's subscriptions as a list, kept in step with Aedes's `client.subscriptions` (a filter →
 * subscription map it writes on SUBSCRIBE, restore and UNSUBSCRIBE, and reads there too): the map is
 * put behind a Proxy whose writes also rebuild the list. Deliveries read the list, with no walk of a
 * dictionary per message.
 */
function followSubscriptions(client: ClientInternals): Granted[] {
  const map = client.subscriptions;
  const list: Granted[] = [];
  const rebuild = (): void => {
    list.length = 0;
    for (const filter of Object.keys(map)) list.push({ filter, qos: map[filter]?.qos ?? 0 });
  };
  rebuild();
  client.subscriptions = new Proxy(map, {
    set(target, key, value) {
      const done = Reflect.set(target, key, value);
      rebuild();
      return done;
    },
    deleteProperty(target, key) {
      const done = Reflect.deleteProperty(target, key);
      rebuild();
      return done;
    },
  });
  return list;
}

/** The highest QoS granted among the subscriptions that match `topic`. */
function grantedQoS(subscriptions: Granted[], topic: string): number {
  // One subscription: it is the one that matched (the common case, no matching needed).
  if (subscriptions.length === 1) return (subscriptions[0] as Granted).qos;
  let highest = -1;
  for (const { filter, qos } of subscriptions) {
    if (qos > highest && filterMatches(filter, topic)) highest = qos;
  }
  // None matches: a retained message for a subscription being replaced; Aedes granted it already.
  return highest < 0 ? 2 : highest;
}

/**
 * MQTT topic matching (§4.7) without splitting: `+` is one level (empty included, as Aedes's matcher
 * has it), `#` the rest of the topic and its parent level; a filter starting with a wildcard does not
 * match a topic starting with `$` [MQTT-4.7.2-1].
 */
export function filterMatches(filter: string, topic: string): boolean {
  const first = filter.charCodeAt(0);
  if (topic.charCodeAt(0) === 36 && (first === 35 || first === 43)) return false;
  let f = 0;
  let t = 0;
  while (f < filter.length) {
    const c = filter.charCodeAt(f);
    if (c === 35) return true;
    if (c === 43) {
      while (t < topic.length && topic.charCodeAt(t) !== 47) t += 1;
      f += 1;
    } else if (t < topic.length && topic.charCodeAt(t) === c) {
      f += 1;
      t += 1;
    } else {
      // `a/#` matches `a` too.
      return t === topic.length && c === 47 && f + 2 === filter.length && filter.charCodeAt(f + 1) === 35;
    }
  }
  return t === topic.length;
}

/** Write a PUBLISH to the client's connection; `done` when it is on its way (or the client is gone). */
function send(
  client: ClientInternals,
  packet: Outgoing,
  qos: 0 | 1 | 2,
  messageId: number | undefined,
  done: () => void,
): void {
  if (!client.connecting && !client.connected) {
    completeLater(done);
    return;
  }
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  const flowing = writePublish(client.conn, packet.topic, payload, qos, packet.retain, messageId ?? 0);

  if (flowing) completeLater(done);
  else client.waitForDrain(() => done());
}

/** A PUBLISH to `stream`: into our connection's batch, or as one buffer to any other stream. */
function writePublish(
  stream: NodeJS.WritableStream,
  topic: string,
  payload: Buffer,
  qos: 0 | 1 | 2,
  retain: boolean,
  messageId: number,
): boolean {
  if (stream instanceof GuardedConnection) return stream.writePublish(topic, payload, qos, retain, messageId);
  return stream.write(encodePublish(topic, payload, qos, retain, messageId, true));
}

/**
 * Completions of this turn's deliveries, reported to mqemitter together on the next turn: one
 * setImmediate for all of them instead of one each, and never synchronously (mqemitter starts its next
 * queued message from a completion; see keepDeliveryAsynchronous).
 */
let completions: Array<() => void> = [];

function completeLater(done: () => void): void {
  if (completions.length === 0) setImmediate(completeAll);
  completions.push(done);
}

function completeAll(): void {
  const now = completions;
  completions = [];
  for (const done of now) done();
}

function noop(): void {}

/**
 * A connection Aedes has just taken on (`aedes.handle(connection)` returned `client`; it reads nothing
 * before the next turn): its packets are parsed by framing.ts's FastParser, which hands what it does
 * not decode itself to the client's own mqtt-packet parser. Aedes's listeners on its parser (packets,
 * errors) and the two fields they read (`client`, `_queue`) move to the new one.
 */
export function useFastParser(client: Client): void {
  const internals = client as unknown as { _parser: PacketParser & ParserInternals };
  const original = internals._parser;
  const packetListeners = original.listeners('packet');
  const errorListeners = original.listeners('error');
  original.removeAllListeners('packet');
  original.removeAllListeners('error');
  const fast = new FastParser(original);
  for (const listener of packetListeners) fast.on('packet', listener as (packet: unknown) => void);
  for (const listener of errorListeners) fast.on('error', listener as (error: Error) => void);
  fast.client = original.client;
  fast._queue = original._queue;
  internals._parser = fast;
}

interface ParserInternals {
  client: unknown;
  _queue: unknown[] | null;
  listeners(event: string): unknown[];
  removeAllListeners(event: string): unknown;
}

/**
 * Aedes writes every packet with mqtt-packet's `writeToStream(packet, client.conn)` (lib/write.js),
 * reading the function from the module at each call. For our connections a QoS 1 PUBACK is not
 * written but handed to the connection, which holds it until the message is stored (framing.ts,
 * "PUBACK after the message is stored"); everything else, and every other stream (MQTT.js's in this
 * process among them), goes to mqtt-packet as before. Installed once; `cacheNumbers` stays the
 * writer's own switch.
 */
function holdPubacksWrittenByAedes(): void {
  const original = mqttPacket.writeToStream as WriteToStream & { outpostHoldsPubacks?: true };
  if (original.outpostHoldsPubacks) return;
  const writeToStream = ((packet, stream, options) =>
    packet.cmd === 'puback' && stream instanceof GuardedConnection && packet.messageId !== undefined
      ? stream.holdPuback(packet.messageId)
      : original(packet, stream, options)) as WriteToStream & { outpostHoldsPubacks?: true };
  Object.defineProperty(writeToStream, 'cacheNumbers', {
    get: () => original.cacheNumbers,
    set: (value: boolean) => (original.cacheNumbers = value),
  });
  writeToStream.outpostHoldsPubacks = true;
  mqttPacket.writeToStream = writeToStream;
}

type WriteToStream = typeof mqttPacket.writeToStream;

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
  /** The subscriptions' trie (qlobber): mqemitter asks it for every message's handlers. */
  _matcher: TopicMatcher;
}

interface TopicMatcher {
  match(topic: string): unknown[];
  add(...args: unknown[]): unknown;
  remove(...args: unknown[]): unknown;
  clear(...args: unknown[]): unknown;
}

/** Topics whose handlers are remembered (rememberMatches); past it the memory starts again. */
const REMEMBERED_TOPICS = 4096;

/**
 * mqemitter asks its trie (qlobber) for the handlers of every message's topic: a split of the topic
 * and a walk of the trie, each building new arrays (a fifth of the broker's allocations and about a
 * tenth of its CPU under bench:broker). A site publishes on a few hundred topics over and over, so the
 * answer for a topic is remembered until the subscriptions change (any add, remove or clear on the
 * trie forgets them all). mqemitter only reads the array it gets back.
 */
function rememberMatches(aedes: Aedes): void {
  const matcher = messageBus(aedes)._matcher;
  const match = matcher.match.bind(matcher);
  let remembered = new Map<string, unknown[]>();
  matcher.match = (topic: string) => {
    let handlers = remembered.get(topic);
    if (handlers === undefined) {
      handlers = match(topic);
      if (remembered.size >= REMEMBERED_TOPICS) remembered = new Map();
      remembered.set(topic, handlers);
    }
    return handlers;
  };
  for (const name of ['add', 'remove', 'clear'] as const) {
    const change = matcher[name].bind(matcher);
    matcher[name] = (...args: unknown[]) => {
      remembered = new Map();
      return change(...args);
    };
  }
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
