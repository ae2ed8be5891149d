// The uplink's on-disk store and its message ids: packets come back in insertion order, and ids held
// in the store stay reserved when MQTT.js clears its provider at a reconnect (so a new publish can
// never be given a stored packet's id and overwrite it).
import { describe, expect, it } from 'vitest';
import type { Packet } from 'mqtt';
import { LevelStore, StoreMessageIds } from '../../daemon/src/mqtt/level-store.js';
import { tempDir } from '../support/processes.js';

function publish(messageId: number, text: string): Packet {
  return {
    cmd: 'publish',
    topic: 't',
    payload: Buffer.from(text),
    qos: 1,
    retain: false,
    dup: false,
    messageId,
  };
}

const put = (store: LevelStore, packet: Packet) =>
  new Promise<void>((resolve, reject) => store.put(packet, (error) => (error ? reject(error) : resolve())));

describe('LevelStore', () => {
  it('gives packets back in insertion order, across a reopen, including puts still in flight', async () => {
    const dir = await tempDir('outpost-store-');
    const store = new LevelStore(dir);
    await store.open();
    await put(store, publish(500, 'a'));
    await put(store, publish(3, 'b'));
    store.put(publish(42, 'c'), () => undefined); // not awaited: the stream must still include it
    const texts: string[] = [];
    for await (const packet of store.createStream() as unknown as AsyncIterable<{ payload: Buffer }>) {
      texts.push(packet.payload.toString());
    }
    expect(texts).toEqual(['a', 'b', 'c']);
    await new Promise<void>((resolve) => store.close(() => resolve()));
    const again = new LevelStore(dir);
    await again.open();
    expect(again.messageIds().sort((x, y) => x - y)).toEqual([3, 42, 500]);
    await new Promise<void>((resolve) => again.close(() => resolve()));
  });

  it('answers a put before its write reaches the disk, keeps the order, and reports a failed write', async () => {
    const dir = await tempDir('outpost-store-');
    const failures: number[] = [];
    const store = new LevelStore(dir, true, (_error, messageId) => failures.push(messageId));
    await store.open();
    // A slow disk: every batch takes 300 ms; the third one fails.
    const db = (store as unknown as { db: { batch: (...args: unknown[]) => Promise<void> } }).db;
    const batch = db.batch.bind(db);
    let batches = 0;
    db.batch = async (...args: unknown[]) => {
      batches += 1;
      const failing = batches === 3;
      await new Promise((resolve) => setTimeout(resolve, 300));
      if (failing) throw new Error('disk full');
      return batch(...args);
    };
    const began = performance.now();
    await put(store, publish(7, 'alert 1'));
    await put(store, publish(8, 'alert 2'));
    await put(store, publish(9, 'alert 3'));
    const answeredMs = performance.now() - began;
    expect(answeredMs).toBeLessThan(250);
    const texts: string[] = [];
    for await (const packet of store.createStream() as unknown as AsyncIterable<{ payload: Buffer }>) {
      texts.push(packet.payload.toString());
    }
    // The replay waited for the writes: both that landed, in order; the failed one was reported.
    expect(texts).toEqual(['alert 1', 'alert 2']);
    expect(failures).toEqual([9]);
    await new Promise<void>((resolve) => store.close(() => resolve()));
  });

  it("keeps the store's message ids reserved across the provider's clear() until they are replayed", () => {
    const held = [1, 2, 3];
    const ids = new StoreMessageIds({ messageIds: () => held });
    ids.clear(); // what MQTT.js does at every CONNACK
    const fresh = Array.from({ length: 10 }, () => ids.allocate());
    expect(fresh.filter((id) => id !== null && held.includes(id))).toEqual([]);
    // The replay registers each stored id once; a second register of the same id is refused.
    expect(held.map((id) => ids.register(id))).toEqual([true, true, true]);
    expect(ids.register(1)).toBe(false);
  });
});
