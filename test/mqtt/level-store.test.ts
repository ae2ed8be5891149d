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
