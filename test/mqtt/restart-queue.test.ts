// Messages queued at the hub for a console that is away survive a hub restart, and are delivered in
// the order they were published, before and after the restart (aedes-persistence-level keys them by
// broker id and a per-run counter: the broker id is per run for that reason).
import { expect, it } from 'vitest';
import { connectAs, SITE, startTestBroker } from '../support/broker.js';
import { until } from '../support/processes.js';

it('messages queued for an away console before a hub restart are neither overwritten nor overtaken by later ones', async () => {
  const hub = await startTestBroker();
  try {
    const topic = `outpost/v1/${SITE}/cam-a/alert`;
    const away = await connectAs(hub, 'console', { clientId: 'console.away', clean: false });
    await away.subscribeAsync(topic, { qos: 1 });
    await away.endAsync();
    const publish = async (names: string[]) => {
      const device = await connectAs(hub, 'cam-a');
      for (const name of names) await device.publishAsync(topic, name, { qos: 1 });
      await device.endAsync();
    };
    await publish(['before-1', 'before-2', 'before-3']);
    await hub.restart();
    await publish(Array.from({ length: 12 }, (_, i) => `after-${i + 1}`));
    const got: string[] = [];
    const back = await connectAs(
      hub,
      'console',
      { clientId: 'console.away', clean: false },
      'mqtts',
      (_topic, payload) => got.push(payload.toString()),
    );
    await until(() => got.length >= 15, 10_000, '15 messages').catch(() => undefined);
    await back.endAsync();
    expect(got).toEqual([
      'before-1',
      'before-2',
      'before-3',
      ...Array.from({ length: 12 }, (_, i) => `after-${i + 1}`),
    ]);
  } finally {
    await hub.stop();
  }
});
