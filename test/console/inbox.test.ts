// The hub's alert inbox over the real broker: an alert from a box becomes a retained inbox entry, a
// console's acknowledgement is stamped by the broker with who sent it (whatever the payload claims),
// and the inbox, acknowledgements included, survives a hub restart and reaches a console that was not
// connected when the alert came. Staff read the site-wide entries only and cannot acknowledge.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { AlertInbox } from '../../daemon/src/console/inbox.js';
import { ackPayload, inboxEntryPayload, type AlertPayload } from '../../daemon/src/mqtt/contract.js';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { connectAs, SITE, startTestBroker, type TestBroker } from '../support/broker.js';

const log = pino({ level: 'silent' });
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function alert(id: string, kind: AlertPayload['kind'], seq = 1): AlertPayload {
  return {
    at: Date.now(),
    bootId: 'boot-0001',
    seq,
    id,
    device: 'cam-a',
    kind,
    severity: 'critical',
    state: 'raised',
    message: `${kind} at cam-a`,
  };
}

async function hub(dataDir?: string): Promise<{ broker: TestBroker; inbox: AlertInbox }> {
  const broker = await startTestBroker(dataDir ? { dataDir } : {});
  const inbox = new AlertInbox({ site: SITE, dataDir: broker.dataDir, keep: 3, bus: broker.broker, log });
  await inbox.start();
  return { broker, inbox };
}

/** Everything `client` receives on `filter`, retained included, as topic → last payload. */
async function watch(client: MqttClient, filter: string): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  client.on('message', (topic, payload) => seen.set(topic, payload.toString()));
  await client.subscribeAsync(filter, { qos: 1 });
  return seen;
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const entryTopic = (audience: string, key: string) => topics.inboxEntry(SITE, audience, 'cam-a', key);

/** A hub with its inbox, a box that raised panic `id`, and a console `ops` watching the inbox. */
async function panicAtHub(
  id: string,
): Promise<{ inbox: AlertInbox; ops: MqttClient; seen: Map<string, string> }> {
  const { broker, inbox } = await hub();
  cleanup.push(
    () => broker.stop(),
    () => inbox.stop(),
  );
  const [box, ops] = [await connectAs(broker, 'cam-a'), await connectAs(broker, 'console')];
  cleanup.push(
    () => box.endAsync(),
    () => ops.endAsync(),
  );
  const seen = await watch(ops, `outpost/v1/${SITE}/inbox/#`);
  await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert(id, 'panic')), { qos: 1 });
  await until(() => seen.has(entryTopic('site', id)), 'the inbox entry');
  return { inbox, ops, seen };
}

describe('alert inbox', () => {
  it('an alert becomes a retained entry; the acknowledgement is stamped with the sender, not the payload', async () => {
    const { inbox, ops, seen } = await panicAtHub('p1');
    expect(inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('site', 'p1')) ?? '')).ack).toBeNull();

    await ops.publishAsync(
      `${entryTopic('site', 'p1')}/ack`,
      JSON.stringify({ by: 'mallory', note: 'on it' }),
      { qos: 1 },
    );
    await until(
      () => inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('site', 'p1')) ?? '')).ack !== null,
      'the acknowledged entry',
    );
    const entry = inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('site', 'p1')) ?? ''));
    expect(entry.ack).toMatchObject({ by: 'console', role: 'console', note: 'on it' });
    expect(ackPayload.parse(JSON.parse(seen.get(`${entryTopic('site', 'p1')}/ack`) ?? '')).by).toBe(
      'console',
    );
    expect(inbox.list()).toHaveLength(1);
  });

  it('only the bridge from the centre names a centre operator: a site account that claims one is refused', async () => {
    const { ops, seen } = await panicAtHub('p2');
    // Refused (and dropped), then a plain acknowledgement on the same connection: that one is the first.
    await ops.publishAsync(`${entryTopic('site', 'p2')}/ack`, JSON.stringify({ operator: 'olga' }), {
      qos: 1,
    });
    await ops.publishAsync(`${entryTopic('site', 'p2')}/ack`, '{}', { qos: 1 });
    await until(
      () => inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('site', 'p2')) ?? '')).ack !== null,
      'the acknowledged entry',
    );
    const entry = inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('site', 'p2')) ?? ''));
    expect(entry.ack).toMatchObject({ by: 'console', role: 'console' });
    expect(entry.ack?.operator).toBeUndefined();
  });

  it('survives a hub restart and reaches a console that was away when the alert came', async () => {
    const first = await hub();
    const box = await connectAs(first.broker, 'cam-a');
    const ops = await connectAs(first.broker, 'console');
    await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert('p2', 'panic')), { qos: 1 });
    await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert('t1', 'temperature', 2)), {
      qos: 1,
    });
    await until(() => first.inbox.list().length === 2, 'two entries');
    await ops.publishAsync(`${entryTopic('site', 'p2')}/ack`, '', { qos: 1 });
    await until(() => first.inbox.list().some((e) => e.ack !== null), 'the acknowledgement');
    await Promise.all([box.endAsync(), ops.endAsync()]);
    await first.inbox.stop();
    await first.broker.stop();
    const saved = JSON.parse(await readFile(join(first.broker.dataDir, 'console', 'inbox.json'), 'utf8')) as {
      entries: unknown[];
    };
    expect(saved.entries).toHaveLength(2);

    const second = await hub(first.broker.dataDir);
    cleanup.push(
      () => second.broker.stop(),
      () => second.inbox.stop(),
    );
    const late = await connectAs(second.broker, 'console');
    cleanup.push(() => late.endAsync());
    const seen = await watch(late, `outpost/v1/${SITE}/inbox/#`);
    await until(() => seen.size === 2, 'both entries, retained');
    expect(inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('site', 'p2')) ?? '')).ack?.by).toBe(
      'console',
    );
    expect(inboxEntryPayload.parse(JSON.parse(seen.get(entryTopic('console', 't1')) ?? '')).ack).toBeNull();
  });

  it('staff read the site-wide entries only and cannot acknowledge; past `keep` the acknowledged go first', async () => {
    const { broker, inbox } = await hub();
    cleanup.push(
      () => broker.stop(),
      () => inbox.stop(),
    );
    const [box, ops, alice] = [
      await connectAs(broker, 'cam-a'),
      await connectAs(broker, 'console'),
      await connectAs(broker, 'alice'),
    ];
    cleanup.push(
      () => box.endAsync(),
      () => ops.endAsync(),
      () => alice.endAsync(),
    );
    const staffSees = await watch(alice, `outpost/v1/${SITE}/inbox/site/#`);
    // A refused subscription: SUBACK 0x80, which MQTT.js turns into a rejection.
    await expect(alice.subscribeAsync(`outpost/v1/${SITE}/inbox/console/#`, { qos: 1 })).rejects.toThrow();
    await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert('p3', 'panic')), { qos: 1 });
    await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert('d1', 'disk', 2)), { qos: 1 });
    await until(() => inbox.list().length === 2 && staffSees.has(entryTopic('site', 'p3')), 'the entries');
    expect([...staffSees.keys()].some((topic) => topic.includes('/inbox/console/'))).toBe(false);
    await alice.publishAsync(`${entryTopic('site', 'p3')}/ack`, '{}', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(inbox.list().find((e) => e.key === 'p3')?.ack).toBeNull();

    // keep = 3: the acknowledged entry goes first when two more arrive.
    await ops.publishAsync(`${entryTopic('site', 'p3')}/ack`, '{}', { qos: 1 });
    await until(() => inbox.list().find((e) => e.key === 'p3')?.ack !== null, 'the acknowledgement');
    await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert('p4', 'panic', 3)), { qos: 1 });
    await box.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify(alert('p5', 'panic', 4)), { qos: 1 });
    await until(() => inbox.list().some((e) => e.key === 'p5'), 'the newest entry');
    expect(
      inbox
        .list()
        .map((e) => e.key)
        .sort(),
    ).toEqual(['d1', 'p4', 'p5']);
    await until(() => staffSees.get(entryTopic('site', 'p3')) === '', 'the pruned entry cleared');
  });
});
