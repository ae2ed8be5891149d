// The broker's on-disk persistence (aedes-persistence-level on LevelDB, in dataDir/broker): opening it,
// one lookup taken off the hot path, a retained-stream error kept from crashing the daemon, and what the
// broker reads and clears in the level store's own key layout (persisted subscriptions, a forgotten
// session, the run number). The one importer of aedes-persistence-level.
//
// On every PUBACK Aedes asks the persistence to forget the acknowledged message
// (`outgoingClearMessageId`), which in the level persistence is a LevelDB read, through the libuv
// thread pool, followed by a batch delete when found. For a clean-session client nothing is ever
// found: Aedes stores a clean session's in-flight QoS 1 messages nowhere (the session ends with the
// connection), except in two places that both go through `outgoingUpdate` first: the queue left by an
// earlier persistent session of the same client id, replayed at CONNECT, and a QoS 2 PUBREL. So the
// wrapper remembers, per clean-session client, the message ids it was asked to store, and answers
// the others at once. bench:broker: the read was 14 % of the broker's CPU at QoS 1.
import { join } from 'node:path';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import { OutpostError } from '../../errors.js';
import { LEVEL_MEMORY } from '../level-store.js';

export type SessionStore = ReturnType<typeof aedesPersistenceLevel>;

/** The broker's open store: the LevelDB, the persistence Aedes uses on it, and this start's run number. */
export interface OpenStore {
  db: Level<string, unknown>;
  persistence: SessionStore;
  run: number;
}

/**
 * Open `{dataDir}/broker` and the level persistence on it, wrapped (below). `onRetainedError` hears of a
 * retained message that could not be read for a subscription.
 */
export async function openStore(
  dataDir: string,
  onRetainedError: (error: Error) => void,
): Promise<OpenStore> {
  const db = new Level<string, unknown>(join(dataDir, 'broker'), { valueEncoding: 'view', ...LEVEL_MEMORY });
  try {
    await db.open();
  } catch (error) {
    throw new OutpostError('START_FAILED', `cannot open the broker's store in ${join(dataDir, 'broker')}`, {
      hint: 'is another outpost daemon running on this data dir? check dataDir and its permissions',
      cause: error,
    });
  }
  // aedes-persistence-level keys a message queued for an offline client by broker id and a counter
  // that restarts at 0 with every broker start: with a fixed id, messages queued after a restart
  // overwrote those queued before it (alerts lost for a console that was away across a hub restart)
  // and were delivered ahead of them. A per-run id that sorts by run keeps both, in order.
  const run = await nextRun(db);
  const persistence = catchRetainedStreamErrors(
    rememberSubscriptionsByTopic(skipCleanSessionClears(aedesPersistenceLevel(db))),
    onRetainedError,
  );
  return { db, persistence, run };
}

/** Release the persistence and close the database (idempotent; errors are not interesting at stop). */
export async function closeStore(store: OpenStore | undefined): Promise<void> {
  if (!store) return;
  await store.persistence.destroy().catch(() => undefined);
  if (store.db.status !== 'closed') await store.db.close().catch(() => undefined);
}

interface ClientLike {
  clean?: boolean;
}
interface PacketLike {
  messageId?: number;
}
type Callback = (...args: unknown[]) => void;
type Method = (client: ClientLike, packet: PacketLike, cb?: Callback) => unknown;

export function skipCleanSessionClears<T extends object>(persistence: T): T {
  const stored = new WeakMap<ClientLike, Set<number>>();
  const target = persistence as unknown as Record<'outgoingUpdate' | 'outgoingClearMessageId', Method>;
  const update = target.outgoingUpdate.bind(persistence);
  const clear = target.outgoingClearMessageId.bind(persistence);
  target.outgoingUpdate = (client, packet, cb) => {
    if (client.clean === true && packet.messageId !== undefined) {
      let ids = stored.get(client);
      if (!ids) stored.set(client, (ids = new Set()));
      ids.add(packet.messageId);
    }
    return update(client, packet, cb);
  };
  target.outgoingClearMessageId = (client, packet, cb) => {
    if (client.clean === true && cb === undefined && packet.messageId !== undefined) {
      const ids = stored.get(client);
      if (!ids?.delete(packet.messageId)) return NOTHING;
    }
    return clear(client, packet, cb);
  };
  return persistence;
}

/** One settled promise for the answers that need no work (Aedes only chains `.then` on them). */
const NOTHING: Promise<undefined> = Promise.resolve(undefined);

/** Topics whose persisted subscribers are remembered; past it the memory starts again. */
const REMEMBERED_TOPICS = 4096;

/**
 * For every QoS 1/2 message Aedes asks the persistence which persisted sessions subscribe to its topic
 * (to queue it for those offline) and then has it queue the message for them. The answer is a walk of
 * the level persistence's trie, asked anew for each message although it changes only when persisted
 * subscriptions do: it is remembered per topic (the settled promise itself) until any of them is added
 * or removed, and queueing for nobody answers at once.
 */
export function rememberSubscriptionsByTopic<T extends object>(persistence: T): T {
  type Method = (...args: unknown[]) => Promise<unknown>;
  const target = persistence as unknown as Record<
    | 'subscriptionsByTopic'
    | 'outgoingEnqueueCombi'
    | 'addSubscriptions'
    | 'removeSubscriptions'
    | 'cleanSubscriptions',
    Method
  >;
  let remembered = new Map<string, Promise<unknown>>();
  const byTopic = target.subscriptionsByTopic.bind(persistence);
  target.subscriptionsByTopic = (topic: unknown) => {
    const key = topic as string;
    let answer = remembered.get(key);
    if (answer === undefined) {
      answer = byTopic(topic);
      if (remembered.size >= REMEMBERED_TOPICS) remembered = new Map();
      remembered.set(key, answer);
    }
    return answer;
  };
  const enqueue = target.outgoingEnqueueCombi.bind(persistence);
  target.outgoingEnqueueCombi = (subs: unknown, packet: unknown) =>
    Array.isArray(subs) && subs.length === 0 ? NOTHING : enqueue(subs, packet);
  for (const name of ['addSubscriptions', 'removeSubscriptions', 'cleanSubscriptions'] as const) {
    const change = target[name].bind(persistence);
    target[name] = (...args: unknown[]) => {
      remembered = new Map();
      return change(...args).finally(() => (remembered = new Map()));
    };
  }
  return persistence;
}

/**
 * Aedes pipes the retained-message stream of a SUBSCRIBE with `.pipe()` and no error listener: a
 * failed read (the store closing under a subscribe in flight at shutdown, a disk error) was an
 * uncaught exception that took the daemon down. The error goes to `onError`; the subscriber simply
 * gets no more retained messages from that stream.
 */
export function catchRetainedStreamErrors<T extends object>(
  persistence: T,
  onError: (error: Error) => void,
): T {
  const target = persistence as unknown as Record<
    'createRetainedStream' | 'createRetainedStreamCombi',
    (pattern: unknown) => NodeJS.ReadableStream
  >;
  for (const name of ['createRetainedStream', 'createRetainedStreamCombi'] as const) {
    const create = target[name].bind(persistence);
    target[name] = (pattern) => create(pattern).on('error', onError);
  }
  return persistence;
}

/**
 * aedes-persistence-level's key layout (asyncPersistence.js): `subscriptions:{id}:{filter}`,
 * `outgoing:{id}:…`, `outgoing-id:{id}:…`, with the client id URI-encoded (so it holds no ':').
 * The persistence has no call to list sessions or to empty one client's queue;
 * test/mqtt/broker.test.ts checks this still holds ("a removed identity's persisted session is
 * forgotten").
 */
const SUBSCRIPTIONS_KEY = 'subscriptions:';

/** Every key under `prefix` (which ends in ':'; ';' is the next byte). */
function prefixRange(prefix: string): { gte: string; lt: string } {
  return { gte: prefix, lt: `${prefix.slice(0, -1)};` };
}

/** Each persisted session's subscription filters, by client id. */
export async function persistedSubscriptions(db: Level<string, unknown>): Promise<Map<string, string[]>> {
  const filtersOf = new Map<string, string[]>();
  for await (const key of db.keys(prefixRange(SUBSCRIPTIONS_KEY))) {
    const rest = key.slice(SUBSCRIPTIONS_KEY.length);
    const split = rest.indexOf(':');
    if (split < 0) continue;
    const clientId = decodeURIComponent(rest.slice(0, split));
    const filters = filtersOf.get(clientId) ?? [];
    filters.push(rest.slice(split + 1));
    filtersOf.set(clientId, filters);
  }
  return filtersOf;
}

/** Forget a persisted session whole: subscriptions, queued and in-flight messages, QoS 2 state, will. */
export async function forgetSession(
  db: Level<string, unknown>,
  persistence: SessionStore,
  clientId: string,
): Promise<void> {
  const id = encodeURIComponent(clientId);
  await persistence.cleanSubscriptions({ id: clientId });
  await db.clear(prefixRange(`outgoing:${id}:`));
  await db.clear(prefixRange(`outgoing-id:${id}:`));
  await persistence.cleanIncoming({ id: clientId });
  await persistence.delWill({ id: clientId });
}

/** The broker's run number in its store: 1 on the first start, +1 on each start after it. */
export async function nextRun(db: Level<string, unknown>): Promise<number> {
  const key = 'outpost:broker-runs';
  const stored = (await db.get(key)) as Uint8Array | undefined;
  const run = (stored ? Number(Buffer.from(stored).toString('utf8')) || 0 : 0) + 1;
  await db.put(key, Buffer.from(String(run)), { sync: true });
  return run;
}
