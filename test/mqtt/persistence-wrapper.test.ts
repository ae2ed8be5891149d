// The wrappers of daemon/src/mqtt/broker/persistence.ts on the real level persistence: a PUBACK from a
// clean-session client costs no LevelDB read, and whatever a clean session did store is still cleared;
// the persisted subscribers of a topic are remembered, and forgotten when the subscriptions change.
import { join } from 'node:path';
import { Writable } from 'node:stream';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import {
  catchRetainedStreamErrors,
  rememberSubscriptionsByTopic,
  skipCleanSessionClears,
} from '../../daemon/src/mqtt/broker/persistence.js';
import { tempDir } from '../support/processes.js';

interface Persistence {
  setup(broker: unknown): Promise<void>;
  destroy(): Promise<void>;
  outgoingEnqueue(sub: { clientId: string }, packet: object): Promise<void>;
  outgoingUpdate(client: object, packet: object): Promise<void>;
  outgoingClearMessageId(client: object, packet: { messageId: number }): Promise<unknown>;
  outgoingStream(client: object): AsyncIterable<unknown>;
}

let opened: Persistence | undefined;
afterEach(async () => {
  await opened?.destroy();
  opened = undefined;
});

async function open(): Promise<{ persistence: Persistence; reads: () => number }> {
  const db = new Level<string, unknown>(join(await tempDir('outpost-persistence-'), 'db'), {
    valueEncoding: 'view',
  });
  let reads = 0;
  const get = db.get.bind(db) as (...args: unknown[]) => Promise<unknown>;
  (db as unknown as { get: typeof get }).get = (...args) => {
    reads += 1;
    return get(...args);
  };
  const persistence = skipCleanSessionClears(aedesPersistenceLevel(db)) as unknown as Persistence;
  await persistence.setup({ id: 'broker-test' });
  opened = persistence;
  return { persistence, reads: () => reads };
}

function packet(messageId: number, counter: number) {
  return {
    cmd: 'publish',
    topic: 'outpost/v1/site/cam-a/alert',
    payload: Buffer.from(`alert ${counter}`),
    qos: 1,
    retain: false,
    dup: false,
    messageId,
    brokerId: 'broker-test',
    brokerCounter: counter,
  };
}

async function queued(persistence: Persistence, client: object): Promise<number> {
  const packets: unknown[] = [];
  for await (const packet of persistence.outgoingStream(client)) packets.push(packet);
  return packets.length;
}

describe('skipCleanSessionClears', () => {
  it('answers a clean session’s PUBACK for a message it never stored without reading the database', async () => {
    const { persistence, reads } = await open();
    const client = { id: 'console', clean: true };
    const before = reads();
    await expect(persistence.outgoingClearMessageId(client, { messageId: 17 })).resolves.toBeUndefined();
    expect(reads()).toBe(before);
  });

  it('still clears what a clean session stored (a queue replayed at CONNECT), and reads for persistent sessions', async () => {
    const { persistence, reads } = await open();
    // Queued for the client id while it had a persistent session.
    await persistence.outgoingEnqueue({ clientId: 'console' }, packet(0, 1));
    const clean = { id: 'console', clean: true };
    expect(await queued(persistence, clean)).toBe(1);
    // Reconnected with a clean session: Aedes gives the packet an id, then clears it.
    await persistence.outgoingUpdate(clean, packet(5, 1));
    const cleared = (await persistence.outgoingClearMessageId(clean, { messageId: 5 })) as {
      payload: unknown;
    };
    expect(Buffer.from(cleared.payload as Uint8Array).toString()).toBe('alert 1');
    expect(await queued(persistence, clean)).toBe(0);

    const persistent = { id: 'cam-a', clean: false };
    const before = reads();
    await expect(persistence.outgoingClearMessageId(persistent, { messageId: 9 })).resolves.toBeUndefined();
    expect(reads()).toBeGreaterThan(before);
  });
});

describe('catchRetainedStreamErrors', () => {
  it('hands a failed retained read to the callback instead of throwing it out of the process', async () => {
    const db = new Level<string, unknown>(join(await tempDir('outpost-persistence-'), 'db'), {
      valueEncoding: 'view',
    });
    const errors: Error[] = [];
    const persistence = catchRetainedStreamErrors(aedesPersistenceLevel(db), (error) =>
      errors.push(error),
    ) as unknown as Persistence & {
      storeRetained(packet: object): Promise<void>;
      createRetainedStreamCombi(patterns: string[]): NodeJS.ReadableStream;
    };
    await persistence.setup({ id: 'broker-test' });
    await persistence.storeRetained({ ...packet(0, 1), retain: true });
    // The store closes under a SUBSCRIBE in flight, as at shutdown; Aedes pipes with no error listener.
    await db.close();
    const seen: unknown[] = [];
    persistence
      .createRetainedStreamCombi(['outpost/#'])
      .pipe(new Writable({ objectMode: true, write: (chunk, _enc, done) => (seen.push(chunk), done()) }));
    const deadline = Date.now() + 5000;
    while (errors.length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(errors.map((error) => (error as Error & { code?: string }).code)).toEqual([
      'LEVEL_DATABASE_NOT_OPEN',
    ]);
    expect(seen).toEqual([]);
  });
});

describe('rememberSubscriptionsByTopic', () => {
  it('answers from memory until a persisted subscription is added, removed or cleaned', async () => {
    const db = new Level<string, unknown>(join(await tempDir('outpost-persistence-'), 'db'), {
      valueEncoding: 'view',
    });
    const persistence = rememberSubscriptionsByTopic(aedesPersistenceLevel(db)) as unknown as Persistence & {
      subscriptionsByTopic(topic: string): Promise<Array<{ clientId: string }>>;
      addSubscriptions(client: object, subs: object[]): Promise<void>;
      removeSubscriptions(client: object, topics: string[]): Promise<void>;
      cleanSubscriptions(client: object): Promise<void>;
    };
    await persistence.setup({ id: 'broker-test' });
    opened = persistence;
    const console = { id: 'console', clean: false };
    const subscribers = async () => (await persistence.subscriptionsByTopic('a/b')).map((s) => s.clientId);
    expect(await subscribers()).toEqual([]);
    expect(await subscribers()).toEqual([]);
    await persistence.addSubscriptions(console, [{ topic: 'a/#', qos: 1 }]);
    expect(await subscribers()).toEqual(['console']);
    await persistence.removeSubscriptions(console, ['a/#']);
    expect(await subscribers()).toEqual([]);
    await persistence.addSubscriptions(console, [{ topic: 'a/+', qos: 1 }]);
    expect(await subscribers()).toEqual(['console']);
    await persistence.cleanSubscriptions(console);
    expect(await subscribers()).toEqual([]);
  });
});
