// Every QoS 1 publish is acknowledged: large binary chunks and small JSON alerts interleaved, sent
// through the uplink's on-disk store. (A bug, found benchmarking panic clips: the broker's connection
// wrapper, Node's Duplex.from around the packet guard, sometimes lost the last chunk under Aedes's
// reading, so one PUBLISH never got its PUBACK. Fixed by GuardedConnection in mqtt/broker/framing.ts.)
// And no PUBACK before the message is stored: Aedes 1.x acknowledged first and stored after, so a
// kill -9 in between lost an acknowledged message.
import { Duplex } from 'node:stream';
import { expect, it } from 'vitest';
import { LevelStore } from '../../daemon/src/mqtt/level-store.js';
import { GuardedConnection } from '../../daemon/src/mqtt/broker/framing.js';
import { connectAs, SITE, startTestBroker } from '../support/broker.js';
import { tempDir } from '../support/processes.js';

it('QoS 1 publishes through the on-disk store, binary and JSON interleaved, are all acknowledged', async () => {
  const hub = await startTestBroker();
  const store = new LevelStore(await tempDir('outpost-levelstore-'));
  await store.open();
  const device = await connectAs(hub, 'cam-a', { clientId: 'cam-a.probe', outgoingStore: store });
  let stalled = -1;
  for (let round = 0; round < 30 && stalled < 0; round += 1) {
    const acked: Array<Promise<unknown>> = [];
    for (let n = 0; n < 3; n += 1) {
      const topic = `outpost/v1/${SITE}/cam-a/clip/r${round}/chunk/${n}`;
      acked.push(device.publishAsync(topic, Buffer.alloc(100_000, n), { qos: 1 }));
      if (n === 1) device.publish(`outpost/v1/${SITE}/cam-a/alert`, JSON.stringify({ round }), { qos: 1 });
    }
    const done = await Promise.race([
      Promise.all(acked).then(() => true),
      new Promise((resolve) => setTimeout(() => resolve(false), 3000)),
    ]);
    if (!done) stalled = round;
  }
  device.end(true);
  await hub.stop();
  expect(stalled).toBe(-1);
});

it('the PUBACK of a retained QoS 1 message leaves only once the message is in the store', async () => {
  const hub = await startTestBroker();
  try {
    // A slow disk: the store takes 300 ms to write a retained message.
    const persistence = (
      hub.broker as unknown as {
        persistence: {
          storeRetained(packet: unknown): Promise<void>;
          createRetainedStream(pattern: string): AsyncIterable<{ payload: Buffer }>;
        };
      }
    ).persistence;
    const store = persistence.storeRetained.bind(persistence);
    persistence.storeRetained = async (packet) => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await store(packet);
    };
    const device = await connectAs(hub, 'cam-a');
    const topic = `outpost/v1/${SITE}/cam-a/status`;
    const began = performance.now();
    await device.publishAsync(topic, 'online', { qos: 1, retain: true });
    const ackedAfterMs = performance.now() - began;
    const stored: string[] = [];
    for await (const packet of persistence.createRetainedStream(topic))
      stored.push(packet.payload.toString());
    device.end(true);
    expect(stored).toEqual(['online']);
    expect(ackedAfterMs).toBeGreaterThanOrEqual(290);
  } finally {
    await hub.stop();
  }
});

it('GuardedConnection holds each PUBACK until its message is released, and sends them in order', async () => {
  const sent: Buffer[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      sent.push(chunk);
      done();
    },
  });
  const conn = new GuardedConnection(socket, { maxPacketBytes: 1024 });
  // Writes are corked until the end of the tick: look after it.
  const out = async (): Promise<number[]> => {
    await new Promise((resolve) => setImmediate(resolve));
    return [...Buffer.concat(sent)];
  };
  // Other packets pass straight through (a PUBLISH, a PINGRESP), PUBACKs are held (aedes.ts hands
  // each PUBACK Aedes writes to holdPuback).
  const publish = [0x30, 0x08, 0x00, 0x02, 0x61, 0x2f, 0x40, 0x02, 0x00, 0x01];
  conn.write(Buffer.from(publish));
  conn.holdPuback(1);
  conn.holdPuback(2);
  conn.write(Buffer.from([0xd0, 0x00]));
  expect(await out()).toEqual([...publish, 0xd0, 0x00]);
  expect(conn.heldAcks).toBe(2);
  conn.released(2); // stored first, but acknowledged after 1 (MQTT 3.1.1 §4.6)
  expect(await out()).toEqual([...publish, 0xd0, 0x00]);
  conn.released(1);
  expect(await out()).toEqual([...publish, 0xd0, 0x00, 0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02]);
  // Released before its PUBACK was held: it goes at once.
  conn.released(3);
  conn.holdPuback(3);
  expect((await out()).slice(-4)).toEqual([0x40, 0x02, 0x00, 0x03]);
  expect(conn.heldAcks).toBe(0);
  conn.destroy();
});

it('GuardedConnection waits for a full socket with one drain listener, however many ticks find it full', async () => {
  // A socket that takes nothing out: every write queues, and it stays full until it is read.
  const socket = new Duplex({ read() {}, write() {}, highWaterMark: 64 });
  const conn = new GuardedConnection(socket, { maxPacketBytes: 1024 });
  let drains = 0;
  conn.on('drain', () => (drains += 1));
  const payload = Buffer.alloc(100, 1);
  for (let tick = 0; tick < 20; tick += 1) {
    expect(conn.writePublish('a/b', payload, 0, false, 0)).toBe(false);
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(socket.listenerCount('drain')).toBeLessThanOrEqual(1);
  socket.emit('drain');
  expect(drains).toBe(1);
  conn.destroy();
});

it('a QoS 1 message whose queueing for a persistent session is slow is still delivered when a later message overtakes it', async () => {
  const hub = await startTestBroker();
  try {
    // A slow disk for the first message queued for the console's persistent session.
    const persistence = (
      hub.broker as unknown as {
        persistence: { outgoingEnqueueCombi(subs: unknown, packet: unknown): Promise<unknown> };
      }
    ).persistence;
    const enqueue = persistence.outgoingEnqueueCombi.bind(persistence);
    let calls = 0;
    persistence.outgoingEnqueueCombi = async (subs, packet) => {
      calls += 1;
      if (calls === 1) await new Promise((resolve) => setTimeout(resolve, 300));
      return enqueue(subs, packet);
    };
    const console1 = await connectAs(hub, 'console', { clientId: 'console', clean: false });
    const seen: string[] = [];
    console1.on('message', (topic) => seen.push(topic.split('/').at(-1) ?? topic));
    await console1.subscribeAsync(`outpost/v1/${SITE}/#`, { qos: 1 });
    const device = await connectAs(hub, 'cam-a');
    const other = await connectAs(hub, 'cam-b');
    // cam-a's alert (QoS 1) waits 300 ms on the disk; cam-b's telemetry (QoS 0, not queued) overtakes it.
    const alert = device.publishAsync(`outpost/v1/${SITE}/cam-a/alert`, '{}', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await other.publishAsync(`outpost/v1/${SITE}/cam-b/telemetry`, '{}', { qos: 0 });
    await alert;
    const deadline = Date.now() + 5000;
    while (seen.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    device.end(true);
    other.end(true);
    console1.end(true);
    expect(seen.sort()).toEqual(['alert', 'telemetry']);
  } finally {
    await hub.stop();
  }
});
