// The bridge's on-disk store (bridge/queue.ts) on its own: order, the byte bound and its drop order,
// retained states replaced by newer ones, and what survives closing and reopening the store.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BridgeClass } from '../../daemon/src/config/schema.js';
import { BridgeQueue, type BridgeMessage } from '../../daemon/src/bridge/queue.js';
import { tempDir } from '../support/processes.js';

const message = (cls: BridgeClass, n: number, bytes = 100, topic = `t/${cls}/${n}`): BridgeMessage => ({
  topic,
  payload: Buffer.alloc(Math.max(0, bytes - Buffer.byteLength(topic)), n % 256),
  qos: cls === 'telemetry' ? 0 : 1,
  retain: cls === 'state',
  cls,
});

async function open(dir: string, maxBytes = 1_000_000): Promise<BridgeQueue> {
  const queue = new BridgeQueue({
    directory: join(dir, 'q'),
    maxBytes,
    onWriteError: (error) => {
      throw error;
    },
  });
  await queue.open();
  return queue;
}

async function drain(queue: BridgeQueue): Promise<string[]> {
  const topics: string[] = [];
  for (let next = await queue.next(); next; next = await queue.next()) {
    topics.push(next.topic);
    queue.ack(next.seq);
  }
  return topics;
}

describe('bridge store', () => {
  it('hands messages back in arrival order across classes, and again after a rewind', async () => {
    const queue = await open(await tempDir());
    const order: BridgeClass[] = ['alert', 'telemetry', 'chat', 'state', 'telemetry', 'manifest'];
    order.forEach((cls, i) => void queue.put(message(cls, i)));
    const first = await queue.next();
    const second = await queue.next();
    expect([first?.topic, second?.topic]).toEqual(['t/alert/0', 't/telemetry/1']);
    queue.ack(first!.seq);
    queue.rewind(); // the link dropped with the second in flight: it is sent again
    expect(await drain(queue)).toEqual([
      't/telemetry/1',
      't/chat/2',
      't/state/3',
      't/telemetry/4',
      't/manifest/5',
    ]);
    expect(queue.stats()).toMatchObject({ messages: 0, bytes: 0 });
    await queue.close();
  });

  it('when full, drops telemetry first, then chunks, replies, states, manifests; never for a lower class', async () => {
    const queue = await open(await tempDir(), 1000);
    for (const [i, cls] of (
      ['chat', 'alert', 'manifest', 'state', 'reply', 'chunk', 'telemetry'] as const
    ).entries())
      await queue.put(message(cls, i, 100));
    await queue.put(message('telemetry', 7, 100));
    await queue.put(message('alert', 8, 100));
    await queue.put(message('chat', 9, 100)); // full: 10 × 100 bytes
    expect(queue.stats().dropped).toMatchObject({ telemetry: 0 });
    await queue.put(message('alert', 10, 250)); // needs 250: both telemetry and the chunk go
    expect(queue.stats().dropped).toMatchObject({ telemetry: 2, chunk: 1, alert: 0 });
    await queue.put(message('telemetry', 11, 100)); // nothing lower than telemetry left to drop: itself
    expect(queue.stats().dropped.telemetry).toBe(3);
    await queue.put(message('chat', 12, 300)); // reply, state, manifest go; alerts stay
    expect(queue.stats().dropped).toMatchObject({ reply: 1, state: 1, manifest: 1, alert: 0, chat: 0 });
    expect(queue.stats().bytes).toBeLessThanOrEqual(1000);
    expect(await drain(queue)).toEqual([
      't/chat/0',
      't/alert/1',
      't/alert/8',
      't/chat/9',
      't/alert/10',
      't/chat/12',
    ]);
    await queue.close();
  });

  it('alerts and chat go only for alerts and chat, oldest first; a message larger than the store is dropped', async () => {
    const queue = await open(await tempDir(), 500);
    for (let i = 0; i < 5; i += 1) await queue.put(message('alert', i, 100));
    await queue.put(message('chat', 5, 100));
    expect(queue.stats().dropped.alert).toBe(1);
    await queue.put(message('telemetry', 6, 100)); // lower than all queued: dropped itself
    await queue.put(message('alert', 7, 600));
    expect(queue.stats().dropped).toMatchObject({ alert: 2, telemetry: 1, chat: 0 });
    expect(await drain(queue)).toEqual(['t/alert/1', 't/alert/2', 't/alert/3', 't/alert/4', 't/chat/5']);
    await queue.close();
  });

  it('a newer retained state replaces the unsent older one of the same topic', async () => {
    const queue = await open(await tempDir());
    await queue.put(message('state', 1, 100, 's/cam-a/status'));
    await queue.put(message('alert', 2));
    await queue.put(message('state', 3, 100, 's/cam-a/status'));
    await queue.put(message('state', 4, 100, 's/cam-b/status'));
    const drained: number[] = [];
    for (let next = await queue.next(); next; next = await queue.next()) {
      drained.push(next.payload[0] ?? -1);
      queue.ack(next.seq);
    }
    expect(drained).toEqual([2, 3, 4]);
    expect(queue.stats().superseded).toBe(1);
    await queue.close();
  });

  it('what was queued and the drop counts survive closing and reopening, in order', async () => {
    const dir = await tempDir();
    let queue = await open(dir, 2000);
    for (let i = 0; i < 30; i += 1) await queue.put(message(i % 3 === 0 ? 'alert' : 'telemetry', i, 100));
    const first = await queue.next();
    queue.ack(first!.seq);
    await queue.close();
    queue = await open(dir, 2000);
    expect(queue.stats()).toMatchObject({ messages: 19, dropped: { telemetry: 10 } });
    const topics = await drain(queue);
    expect(topics[0]).toBe('t/alert/3');
    expect(topics.map((t) => Number(t.split('/')[2]))).toEqual(
      [...topics.map((t) => Number(t.split('/')[2]))].sort((a, b) => a - b),
    );
    await queue.close();
    queue = await open(dir, 2000);
    expect(queue.stats().messages).toBe(0);
    await queue.close();
  });

  it('replays a store larger than its memory cache from disk, in order', async () => {
    const dir = await tempDir();
    let queue = await open(dir, 64 * 1024 * 1024);
    for (let i = 0; i < 3000; i += 1) void queue.put(message('alert', i, 2000));
    await queue.put(message('chat', 3000, 2000));
    await queue.close();
    queue = await open(dir, 64 * 1024 * 1024);
    const got = await drain(queue);
    expect(got.length).toBe(3001);
    expect(got.at(-1)).toBe('t/chat/3000');
    expect(got.slice(0, 3000)).toEqual([...Array(3000).keys()].map((i) => `t/alert/${i}`));
    await queue.close();
  });
});
