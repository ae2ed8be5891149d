// Every QoS 1 publish is acknowledged: large binary chunks and small JSON alerts interleaved, sent
// through the uplink's on-disk store. (A bug, found benchmarking panic clips: the broker's connection
// wrapper, Node's Duplex.from around the packet guard, sometimes lost the last chunk under Aedes's
// reading, so one PUBLISH never got its PUBACK. Fixed by GuardedConnection in mqtt/limits.ts.)
import { expect, it } from 'vitest';
import { LevelStore } from '../../daemon/src/mqtt/level-store.js';
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
