// The broker against the MQTT 3.1.1 normative statements it enforces or deliberately relaxes, for
// CONNECT, SUBSCRIBE and PUBLISH, driven with raw packets (mqtt-packet, or hand-made bytes where a
// packet must break the rules) so the exact return codes, QoS and flags are seen. Each test is named
// by its statement number (OASIS MQTT 3.1.1, 29 October 2014); docs/mqtt.md has the table.
import { afterEach, describe, expect, it } from 'vitest';
import { P, PEOPLE, startTestBroker, type TestBroker } from '../support/broker.js';
import { run } from '../support/broker.js';
import { rawConnect, RawClient, type ConnectFields, type Received } from '../support/raw-mqtt.js';

let hub: TestBroker | undefined;
const raws: RawClient[] = [];

afterEach(async () => {
  for (const raw of raws.splice(0)) raw.end();
  await hub?.stop();
  hub = undefined;
});

async function broker(): Promise<TestBroker> {
  hub ??= await startTestBroker();
  return hub;
}

/** CONNECT as `name` (its password) on the loopback listener; the CONNACK, or undefined if closed. */
async function connectAs(
  name: string,
  fields: ConnectFields = {},
): Promise<{ client: RawClient; connack: Received | undefined }> {
  const { tcpPort } = await broker();
  const made = await rawConnect(tcpPort, {
    clientId: `${name}.${Math.random().toString(16).slice(2, 8)}`,
    username: name,
    password: PEOPLE[name]?.password ?? '',
    ...fields,
  });
  raws.push(made.client);
  return made;
}

/** A connected client, CONNACK 0 checked. */
async function connected(name: string, fields: ConnectFields = {}): Promise<RawClient> {
  const { client, connack } = await connectAs(name, fields);
  expect(connack?.returnCode).toBe(0);
  return client;
}

let nextId = 1;
async function subscribe(client: RawClient, filters: Array<[string, number]>): Promise<number[]> {
  const messageId = nextId++;
  client.send({
    cmd: 'subscribe',
    messageId,
    subscriptions: filters.map(([topic, qos]) => ({ topic, qos })),
  });
  const suback = await client.next('suback', (packet) => packet.messageId === messageId);
  return suback.granted ?? [];
}

function publish(client: RawClient, topic: string, payload: string, qos: 0 | 1 | 2, extra = {}): number {
  const messageId = qos > 0 ? nextId++ : undefined;
  client.send({
    cmd: 'publish',
    topic,
    payload: Buffer.from(payload),
    qos,
    retain: false,
    dup: false,
    ...(messageId ? { messageId } : {}),
    ...extra,
  });
  return messageId ?? 0;
}

/** Wait `ms` for anything more to arrive (for "exactly one copy" checks). */
const settle = (ms = 300) => new Promise((resolve) => setTimeout(resolve, ms));

/** The bytes of a CONNECT (protocol name, level and flags as given) for rules mqtt-packet won't break. */
function oddConnectBytes(protocol: string, level: number, flags: number): Buffer {
  const clientId = Buffer.from('raw');
  const body = Buffer.concat([
    Buffer.from([0, protocol.length]),
    Buffer.from(protocol),
    // Level 5 (MQTT 5) has a properties length (0) after the keep-alive.
    Buffer.from([level, flags, 0, 30, ...(level === 5 ? [0] : []), 0, clientId.length]),
    clientId,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

describe('CONNECT (MQTT 3.1.1 §3.1, §3.2)', () => {
  it('[MQTT-3.1.0-1] a first packet that is not CONNECT closes the connection', async () => {
    const raw = await RawClient.open((await broker()).tcpPort);
    raws.push(raw);
    publish(raw, `${P}/cam-a/alert`, 'x', 0);
    expect(await raw.closedWithin(3000)).toBe(true);
    expect(raw.received).toEqual([]);
  });

  it('[MQTT-3.1.0-2] a second CONNECT is a protocol violation: the client is disconnected', async () => {
    const client = await connected('cam-a');
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'cam-a.x' });
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.1.2-1] a protocol name other than MQTT is disconnected without a CONNACK', async () => {
    const raw = await RawClient.open((await broker()).tcpPort);
    raws.push(raw);
    raw.send(oddConnectBytes('MQTX', 4, 0x02));
    expect(await raw.closedWithin(3000)).toBe(true);
    expect(raw.received).toEqual([]);
  });

  it('[MQTT-3.1.2-2] an unsupported protocol level (5, or one no MQTT version has) gets CONNACK 0x01, then the connection closes', async () => {
    for (const level of [5, 6, 200]) {
      const raw = await RawClient.open((await broker()).tcpPort);
      raws.push(raw);
      raw.send(oddConnectBytes('MQTT', level, 0x02));
      const connack = await raw.next('connack');
      expect(connack.returnCode, `level ${level}`).toBe(1);
      expect(await raw.closedWithin(3000)).toBe(true);
    }
  });

  it('[MQTT-3.1.2-3] a CONNECT with its reserved flag set is disconnected without a CONNACK', async () => {
    const raw = await RawClient.open((await broker()).tcpPort);
    raws.push(raw);
    raw.send(oddConnectBytes('MQTT', 4, 0x03));
    expect(await raw.closedWithin(3000)).toBe(true);
    expect(raw.received).toEqual([]);
  });

  it('[MQTT-3.1.2-24] a client silent for 1.5 × its keep-alive is disconnected', async () => {
    const client = await connected('cam-a', { keepalive: 1 });
    const started = Date.now();
    expect(await client.closedWithin(5000)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('§3.1.2.10 keep-alive 0 turns the mechanism off: accepted (CONNACK 0), and so is the protocol maximum', async () => {
    const idle = await connected('cam-a', { keepalive: 0 });
    await connected('cam-b', { keepalive: 65535 });
    // Dead peers are found by TCP keep-alive on the broker's side of every connection instead.
    const sockets = await run('ss', ['-tnoH', 'state', 'established', `( dport = :${idle.localPort} )`]);
    expect(sockets.stdout).toMatch(/timer:\(keepalive,/);
  });

  it('[MQTT-3.1.2-8] the will is published when the connection closes without DISCONNECT', async () => {
    const reader = await connected('console');
    await subscribe(reader, [[`${P}/cam-a/status`, 1]]);
    const will = { topic: `${P}/cam-a/status`, payload: Buffer.from('gone'), qos: 1 as const, retain: false };
    const leaving = await connected('cam-a', { will });
    leaving.end();
    const published = await reader.next('publish', (packet) => packet.topic === will.topic);
    expect(published.payload?.toString()).toBe('gone');
  });

  it('[MQTT-3.1.2-10] [MQTT-3.14.4-3] after DISCONNECT the will is discarded, not published', async () => {
    const reader = await connected('console');
    await subscribe(reader, [[`${P}/cam-a/status`, 1]]);
    const will = { topic: `${P}/cam-a/status`, payload: Buffer.from('gone'), qos: 1 as const, retain: false };
    const leaving = await connected('cam-a', { will });
    leaving.send({ cmd: 'disconnect' });
    expect(await leaving.closedWithin(3000)).toBe(true);
    await settle(500);
    expect(reader.publishes(will.topic)).toEqual([]);
  });

  it('[MQTT-3.1.3-6] a zero-byte client id with clean session 1 is accepted (the broker assigns one)', async () => {
    await connected('cam-a', { clientId: '', clean: true });
  });

  it('[MQTT-3.1.3-8] a zero-byte client id with clean session 0 gets CONNACK 0x02, then the connection closes', async () => {
    const { client, connack } = await connectAs('cam-a', { clientId: '', clean: false });
    expect(connack?.returnCode).toBe(2);
    expect(connack?.sessionPresent).toBe(false);
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it("[MQTT-3.1.3-9] (relaxes [MQTT-3.1.3-5]) a client id in another identity's namespace is rejected with 0x02", async () => {
    const { client, connack } = await connectAs('cam-b', { clientId: 'cam-a' });
    expect(connack?.returnCode).toBe(2);
    expect(await client.closedWithin(3000)).toBe(true);
    // A persistent session outside the identity's own namespace, likewise.
    expect((await connectAs('cam-b', { clientId: 'abc', clean: false })).connack?.returnCode).toBe(2);
    // Any other id of 1–23 characters is allowed for a clean session.
    await connected('cam-b', { clientId: 'abc' });
  });

  it('[MQTT-3.1.4-2] a second connection with the same client id (same identity) takes over: the first is disconnected', async () => {
    const first = await connected('cam-a', { clientId: 'cam-a.twice' });
    await connected('cam-a', { clientId: 'cam-a.twice' });
    expect(await first.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] session present is 0 for a clean session and 1 for a stored one', async () => {
    const fresh = await connectAs('cam-a', { clientId: 'cam-a.session', clean: false });
    expect(fresh.connack?.sessionPresent).toBe(false);
    await subscribe(fresh.client, [[`${P}/cam-a/cmd/#`, 1]]);
    fresh.client.send({ cmd: 'disconnect' });
    await fresh.client.closedWithin(3000);
    const back = await connectAs('cam-a', { clientId: 'cam-a.session', clean: false });
    expect(back.connack?.sessionPresent).toBe(true);
    back.client.send({ cmd: 'disconnect' });
    await back.client.closedWithin(3000);
    const clean = await connectAs('cam-a', { clientId: 'cam-a.session', clean: true });
    expect(clean.connack?.sessionPresent).toBe(false);
  });

  it('[MQTT-3.2.2-4] [MQTT-3.2.2-5] a refused CONNECT gets a 3.1.1 return code with session present 0, then the connection closes', async () => {
    const { client, connack } = await connectAs('cam-a', { password: 'wrong' });
    expect(connack?.returnCode).toBe(5);
    expect(connack?.sessionPresent).toBe(false);
    expect(await client.closedWithin(3000)).toBe(true);
  });
});

describe('SUBSCRIBE (MQTT 3.1.1 §3.8, §3.9, §4.7)', () => {
  it('[MQTT-3.8.1-1] a SUBSCRIBE with wrong reserved bits in its fixed header closes the connection', async () => {
    const client = await connected('root');
    const topic = Buffer.from('a/b');
    // 0x80 instead of 0x82; message id 1; one filter at QoS 0.
    client.send(Buffer.from([0x80, 2 + 2 + topic.length + 1, 0, 1, 0, topic.length, ...topic, 0]));
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.8.3-3] a SUBSCRIBE without a topic filter closes the connection', async () => {
    const client = await connected('root');
    client.send(Buffer.from([0x82, 2, 0, 1]));
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.8.3-4] a requested QoS of 3 closes the connection', async () => {
    const client = await connected('root');
    const topic = Buffer.from('a/b');
    client.send(Buffer.from([0x82, 2 + 2 + topic.length + 1, 0, 1, 0, topic.length, ...topic, 3]));
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.9.3-1] one SUBACK with the same packet id and a code per filter, in order; 0x80 for a refused one', async () => {
    const client = await connected('cam-a');
    client.send({
      cmd: 'subscribe',
      messageId: 4242,
      subscriptions: [
        { topic: `${P}/chat/#`, qos: 2 },
        { topic: `${P}/cam-b/cmd/#`, qos: 1 },
        { topic: `${P}/cam-a/cmd/#`, qos: 0 },
      ],
    });
    const suback = await client.next('suback');
    expect(suback.messageId).toBe(4242);
    expect(suback.granted).toEqual([2, 0x80, 0]);
  });

  it('[MQTT-3.8.4-3] subscribing again to the same filter replaces the subscription and re-sends its retained messages', async () => {
    const root = await connected('root');
    publish(root, 'a/b', 'kept', 1, { retain: true });
    await root.next('puback');
    const client = await connected('root');
    expect(await subscribe(client, [['a/+', 0]])).toEqual([0]);
    await client.next('publish', (packet) => packet.topic === 'a/b');
    const from = client.received.length;
    expect(await subscribe(client, [['a/+', 1]])).toEqual([1]);
    const again = await client.next('publish', (packet) => packet.topic === 'a/b', 5000, from);
    expect(again.retain).toBe(true);
    publish(root, 'a/b', 'live', 1);
    const live = await client.next('publish', (packet) => packet.payload?.toString() === 'live');
    expect(live.qos).toBe(1);
    await settle();
    expect(client.publishes('a/b').filter((packet) => packet.payload?.toString() === 'live')).toHaveLength(1);
  });

  it('[MQTT-4.7.1-2] a filter with # anywhere but last closes the connection', async () => {
    const client = await connected('root');
    client.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'a/#/b', qos: 0 }] });
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-4.7.3-2] a filter holding U+0000 closes the connection', async () => {
    const client = await connected('root');
    client.send({ cmd: 'subscribe', messageId: 8, subscriptions: [{ topic: 'a/\u0000', qos: 0 }] });
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-4.7.2-1] a filter starting with a wildcard does not match $ topics', async () => {
    const everything = await connected('root');
    await subscribe(everything, [['#', 0]]);
    const sys = await connected('root');
    await subscribe(sys, [['$SYS/#', 0]]);
    // Aedes announces each new subscription on $SYS/{broker}/new/subscribes.
    await subscribe(everything, [['x/y', 0]]);
    await sys.next('publish', (packet) => packet.topic?.endsWith('/new/subscribes') === true);
    await settle();
    expect(everything.received.filter((packet) => packet.topic?.startsWith('$'))).toEqual([]);
  });
});

describe('PUBLISH (MQTT 3.1.1 §3.3, §4.3, §4.7)', () => {
  it('[MQTT-3.3.1-4] a PUBLISH with both QoS bits set closes the connection', async () => {
    const client = await connected('root');
    const topic = Buffer.from('a/b');
    client.send(Buffer.from([0x36, 2 + topic.length + 2 + 1, 0, topic.length, ...topic, 0, 1, 0x78]));
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.3.2-2] [MQTT-4.7.1-1] a topic name with a wildcard closes the connection', async () => {
    const client = await connected('root');
    publish(client, 'a/+', 'x', 0);
    expect(await client.closedWithin(3000)).toBe(true);
    const other = await connected('root');
    publish(other, 'a/#', 'x', 0);
    expect(await other.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-1.5.3-1] [MQTT-1.5.3-2] [MQTT-4.7.3-2] a topic name of ill-formed UTF-8, or holding U+0000, closes the connection', async () => {
    for (const topic of [Buffer.from([0x61, 0x2f, 0xff]), Buffer.from([0x61, 0x00, 0x62])]) {
      const client = await connected('root');
      client.send(
        Buffer.concat([Buffer.from([0x30, 2 + topic.length + 1, 0, topic.length]), topic, Buffer.from('x')]),
      );
      expect(await client.closedWithin(3000), topic.toString('hex')).toBe(true);
    }
  });

  it('[MQTT-4.7.3-1] an empty topic name closes the connection', async () => {
    const client = await connected('root');
    client.send(Buffer.from([0x30, 3, 0, 0, 0x78]));
    expect(await client.closedWithin(3000)).toBe(true);
  });

  it('[MQTT-3.3.4-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2] QoS 1 gets a PUBACK, QoS 2 a PUBREC and, after PUBREL, a PUBCOMP, each with the packet id', async () => {
    const client = await connected('root');
    const one = publish(client, 'a/b', 'x', 1);
    expect((await client.next('puback')).messageId).toBe(one);
    const two = publish(client, 'a/b', 'x', 2);
    expect((await client.next('pubrec')).messageId).toBe(two);
    client.send({ cmd: 'pubrel', messageId: two });
    expect((await client.next('pubcomp')).messageId).toBe(two);
  });

  it('[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.3.1-9] a retained message is stored and sent to a new subscriber with RETAIN 1; live deliveries carry RETAIN 0', async () => {
    const root = await connected('root');
    const live = await connected('root');
    await subscribe(live, [['r/+', 1]]);
    publish(root, 'r/one', 'kept', 1, { retain: true });
    const delivered = await live.next('publish', (packet) => packet.topic === 'r/one');
    expect(delivered.retain).toBe(false);
    const late = await connected('root');
    await subscribe(late, [['r/#', 1]]);
    const retained = await late.next('publish', (packet) => packet.topic === 'r/one');
    expect(retained.retain).toBe(true);
    expect(retained.payload?.toString()).toBe('kept');
  });

  it('[MQTT-3.3.1-10] [MQTT-3.3.1-11] a zero-byte retained message is delivered and removes the retained one', async () => {
    const root = await connected('root');
    publish(root, 'r/two', 'kept', 1, { retain: true });
    await root.next('puback');
    const live = await connected('root');
    await subscribe(live, [['r/two', 1]]);
    await live.next('publish', (packet) => packet.topic === 'r/two');
    publish(root, 'r/two', '', 1, { retain: true });
    await live.next('publish', (packet) => packet.payload?.length === 0);
    const late = await connected('root');
    await subscribe(late, [['r/two', 1]]);
    await settle(500);
    expect(late.publishes('r/two')).toEqual([]);
  });

  it('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not passed on to subscribers', async () => {
    const root = await connected('root');
    const reader = await connected('root');
    await subscribe(reader, [['d/+', 1]]);
    publish(root, 'd/x', 'again', 1, { dup: true });
    const delivered = await reader.next('publish', (packet) => packet.topic === 'd/x');
    expect(delivered.dup).toBe(false);
  });

  it('[MQTT-3.8.4-6] a message goes out at the lower of its QoS and the granted QoS', async () => {
    const root = await connected('root');
    const zero = await connected('root');
    await subscribe(zero, [['q/zero', 0]]);
    const one = await connected('root');
    await subscribe(one, [['q/one', 1]]);
    publish(root, 'q/zero', 'x', 1);
    publish(root, 'q/one', 'y', 0);
    expect((await zero.next('publish')).qos).toBe(0);
    expect((await one.next('publish')).qos).toBe(0);
  });

  it.each([
    {
      first: 'a/#',
      firstQos: 2,
      second: 'a/+',
      secondQos: 1,
      qos: 2,
      why: 'one copy, at the highest granted QoS',
    },
    {
      first: 'a/b',
      firstQos: 0,
      second: 'a/+',
      secondQos: 1,
      qos: 1,
      why: 'a QoS 1 message comes once, at QoS 1',
    },
  ] as const)(
    '[MQTT-3.3.5-1] overlapping subscriptions ($first at QoS $firstQos, $second at QoS $secondQos): $why',
    async ({ first, firstQos, second, secondQos, qos }) => {
      const root = await connected('root');
      const reader = await connected('root');
      expect(await subscribe(reader, [[first, firstQos]])).toEqual([firstQos]);
      expect(await subscribe(reader, [[second, secondQos]])).toEqual([secondQos]);
      publish(root, 'a/b', 'message', qos);
      await reader.next('publish', (packet) => packet.topic === 'a/b');
      await settle();
      expect(reader.publishes('a/b').map((packet) => packet.qos)).toEqual([qos]);
    },
  );

  it('[MQTT-3.3.5-1] a console watching P/# at QoS 0 and P/+/alert at QoS 1 gets each alert once, at QoS 1', async () => {
    const consoleClient = await connected('console');
    await subscribe(consoleClient, [
      [`${P}/#`, 0],
      [`${P}/+/alert`, 1],
    ]);
    const camera = await connected('cam-a');
    publish(camera, `${P}/cam-a/telemetry`, '{}', 0);
    publish(camera, `${P}/cam-a/alert`, '{"kind":"panic"}', 1);
    await consoleClient.next('publish', (packet) => packet.topic === `${P}/cam-a/alert`);
    await settle();
    expect(consoleClient.publishes(`${P}/cam-a/alert`).map((packet) => packet.qos)).toEqual([1]);
    expect(consoleClient.publishes(`${P}/cam-a/telemetry`).map((packet) => packet.qos)).toEqual([0]);
  });

  it('[MQTT-3.3.5-2] a publish the ACL refuses is acknowledged and dropped; the client stays connected', async () => {
    const reader = await connected('console');
    await subscribe(reader, [[`${P}/#`, 1]]);
    const camera = await connected('cam-a');
    const forged = publish(camera, `${P}/cam-b/alert`, 'forged', 1);
    expect((await camera.next('puback')).messageId).toBe(forged);
    publish(camera, `${P}/cam-a/alert`, 'genuine', 1);
    await reader.next('publish', (packet) => packet.topic === `${P}/cam-a/alert`);
    expect(reader.publishes(`${P}/cam-b/alert`)).toEqual([]);
    expect(camera.closed).toBe(false);
  });

  it('§4.7.2 (SHOULD) no client, admin included, publishes on a $ topic: acknowledged and dropped', async () => {
    const sys = await connected('root');
    await subscribe(sys, [
      ['$SYS/#', 0],
      ['$outpost/#', 0],
      ['$x/#', 0],
    ]);
    const admin = await connected('root');
    for (const topic of ['$SYS/fake/heartbeat', '$outpost/refused', '$x/y']) {
      const id = publish(admin, topic, 'spoof', 1);
      expect((await admin.next('puback', (packet) => packet.messageId === id)).messageId).toBe(id);
    }
    await settle(500);
    expect(sys.received.filter((packet) => packet.payload?.toString() === 'spoof')).toEqual([]);
  });

  it('(relaxes [MQTT-3.3.1-5]) RETAIN is cleared on chat and commands: an event must not fire again for each new subscriber', async () => {
    const consoleClient = await connected('console');
    publish(consoleClient, `${P}/cam-a/cmd/ping`, '{"id":"1"}', 1, { retain: true });
    await consoleClient.next('puback');
    const late = await connected('cam-a');
    await subscribe(late, [[`${P}/cam-a/cmd/#`, 1]]);
    await settle(500);
    expect(late.publishes(`${P}/cam-a/cmd/ping`)).toEqual([]);
  });
});
