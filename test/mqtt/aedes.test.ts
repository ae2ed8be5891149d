// What daemon/src/mqtt/broker/aedes.ts relies on in Aedes's private state, pinned on a bare Aedes (no
// Outpost policy) so that an Aedes upgrade that moves any of it fails here, by name, rather than as a
// quiet change of behaviour elsewhere.
import { createServer, type Server } from 'node:net';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  openStore,
  closeStore,
  type OpenStore,
  type SessionStore,
} from '../../daemon/src/mqtt/broker/persistence.js';
import { tempDir } from '../support/processes.js';
import { topicMatches } from '../../daemon/src/mqtt/acl.js';
import {
  busBacklog,
  connectedClient,
  connectedClients,
  createAedes,
  filterMatches,
  pendingWill,
  prepareClient,
  type Aedes,
  type AedesClient,
  type AedesHooks,
  type StoredWill,
} from '../../daemon/src/mqtt/broker/aedes.js';

let aedes: Aedes | undefined;
let store: OpenStore | undefined;
let server: Server | undefined;
const clients: MqttClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await new Promise<void>((resolve) => (aedes ? aedes.close(() => resolve()) : resolve()));
  await closeStore(store);
  aedes = undefined;
  server = undefined;
  store = undefined;
});

/** A bare Aedes (its in-memory persistence, or the level one) on a loopback port, with `hooks`. */
async function bareAedes(hooks: AedesHooks = {}, persistence?: SessionStore): Promise<number> {
  const made = await createAedes(
    { id: 'pinned', persistence, ...hooks },
    { error: () => undefined, clientError: () => undefined },
  );
  aedes = made;
  const listening = createServer((socket) => made.handle(socket));
  server = listening;
  await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
  return (listening.address() as { port: number }).port;
}

async function client(port: number, clientId: string, extra = {}): Promise<MqttClient> {
  const made = await connectAsync(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, ...extra });
  clients.push(made);
  return made;
}

/** Publish on the broker itself with a given broker id and counter (as a queued message would carry). */
function publishAs(broker: Aedes, topic: string, brokerCounter: number): Promise<void> {
  return new Promise((resolve) =>
    broker.publish(
      {
        cmd: 'publish',
        topic,
        payload: Buffer.from(String(brokerCounter)),
        qos: 0,
        retain: false,
        dup: false,
        ...({ brokerId: 'other-run', brokerCounter } as object),
      },
      () => resolve(),
    ),
  );
}

describe('Aedes private state the broker relies on (aedes.ts)', () => {
  it('a message whose broker counter is below one already delivered is dropped as a duplicate, unless the client was prepared', async () => {
    const port = await bareAedes();
    const broker = aedes as Aedes;
    const plain = await client(port, 'plain');
    const prepared = await client(port, 'prepared');
    prepareClient(connectedClient(broker, 'prepared') as AedesClient, (_client, packet) => packet);
    const seen = { plain: [] as string[], prepared: [] as string[] };
    plain.on('message', (_topic, payload) => seen.plain.push(payload.toString()));
    prepared.on('message', (_topic, payload) => seen.prepared.push(payload.toString()));
    await plain.subscribeAsync('t');
    await prepared.subscribeAsync('t');
    await publishAs(broker, 't', 10);
    await publishAs(broker, 't', 5);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen.plain).toEqual(['10']);
    expect(seen.prepared).toEqual(['10', '5']);
  });

  it('Aedes alone sends a message matched by a/b (QoS 0) and a/+ (QoS 1) at the QoS it looks up by topic, 0; a prepared client gets it at 1, once', async () => {
    const port = await bareAedes();
    const broker = aedes as Aedes;
    const copies = async (clientId: string, prepare: boolean): Promise<number[]> => {
      const made = await client(port, clientId);
      if (prepare) prepareClient(connectedClient(broker, clientId) as AedesClient, (_c, packet) => packet);
      const qos: number[] = [];
      made.on('packetreceive', (packet) => {
        if (packet.cmd === 'publish') qos.push(packet.qos);
      });
      await made.subscribeAsync('a/b', { qos: 0 });
      await made.subscribeAsync('a/+', { qos: 1 });
      return qos;
    };
    const plain = await copies('plain', false);
    const prepared = await copies('prepared', true);
    const publisher = await client(port, 'publisher');
    await publisher.publishAsync('a/b', 'x', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(plain).toEqual([0]);
    expect(prepared).toEqual([1]);
  });

  it('a prepared client follows its subscriptions as they change: after UNSUBSCRIBE the remaining one decides the QoS', async () => {
    const port = await bareAedes();
    const made = await client(port, 'changing');
    prepareClient(connectedClient(aedes as Aedes, 'changing') as AedesClient, (_c, packet) => packet);
    const qos: number[] = [];
    made.on('packetreceive', (packet) => {
      if (packet.cmd === 'publish') qos.push(packet.qos);
    });
    await made.subscribeAsync('c/#', { qos: 2 });
    await made.subscribeAsync('c/+', { qos: 1 });
    const publisher = await client(port, 'publisher');
    await publisher.publishAsync('c/d', 'x', { qos: 2 });
    await made.unsubscribeAsync('c/#');
    await publisher.publishAsync('c/d', 'y', { qos: 2 });
    await made.subscribeAsync('c/+', { qos: 0 });
    await publisher.publishAsync('c/d', 'z', { qos: 2 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(qos).toEqual([2, 1, 0]);
  });

  it("a client's delivery state is where aedes.ts reads it: subscriptions by filter with their QoS, the next packet id, waitForDrain", async () => {
    const port = await bareAedes();
    const made = await client(port, 'shape');
    await made.subscribeAsync('s/+', { qos: 1 });
    const internals = connectedClient(aedes as Aedes, 'shape') as unknown as Record<string, unknown>;
    expect((internals.subscriptions as Record<string, { qos: number }>)['s/+']?.qos).toBe(1);
    expect(internals._nextId).toBeGreaterThanOrEqual(1);
    expect(internals._nextId).toBeLessThanOrEqual(65535);
    for (const name of ['deliver0', 'deliverQoS', 'waitForDrain'])
      expect(typeof internals[name]).toBe('function');
  });

  it("filterMatches agrees with the ACL's topic matching, and keeps $ topics from wildcard-first filters", () => {
    const filters = [
      '#',
      '+',
      'a',
      'a/#',
      'a/+',
      'a/b',
      '+/b',
      'a/+/c',
      'a/b/#',
      '+/+',
      '$SYS/#',
      '+/x',
      'a//b',
      'a/+/#',
    ];
    const names = [
      'a',
      'a/b',
      'a/b/c',
      'a/c',
      'b',
      'x/b',
      'a//b',
      'a/',
      '$SYS/x',
      '$SYS',
      'ab',
      'a/bc',
      'a/b/c/d',
    ];
    for (const filter of filters) {
      for (const topic of names) {
        const dollar = topic.startsWith('$') && (filter.startsWith('#') || filter.startsWith('+'));
        expect(filterMatches(filter, topic), `${filter} ~ ${topic}`).toBe(
          !dollar && topicMatches(filter, topic),
        );
      }
    }
  });

  it('connected clients are kept by id (connectedClient, connectedClients)', async () => {
    const port = await bareAedes();
    await client(port, 'one');
    const found = connectedClient(aedes as Aedes, 'one');
    expect(found?.id).toBe('one');
    expect(connectedClients(aedes as Aedes).map((c) => c.id)).toEqual(['one']);
    expect(connectedClient(aedes as Aedes, 'nobody')).toBeUndefined();
  });

  it("the CONNECT's will is on the client during authenticate (pendingWill); the level store gives it the broker id and client id", async () => {
    const wills: Array<StoredWill | undefined> = [];
    store = await openStore(await tempDir('outpost-aedes-'), () => undefined);
    const port = await bareAedes(
      {
        authenticate: (client, _username, _password, done) => {
          wills.push(pendingWill(client));
          done(null, true);
        },
      },
      store.persistence,
    );
    await client(port, 'with-will', {
      will: { topic: 'w/x', payload: Buffer.from('bye'), qos: 1, retain: false },
    });
    await client(port, 'without-will');
    expect(wills.map((will) => will?.topic)).toEqual(['w/x', undefined]);
    // The same object, once stored: what a will published with no client behind it is judged by.
    expect(wills[0]?.brokerId).toBe('pinned');
    expect(wills[0]?.clientId).toBe('with-will');
  });

  it('handlers remembered for a topic are forgotten when a subscription comes or goes', async () => {
    const port = await bareAedes();
    const first = await client(port, 'first');
    const second = await client(port, 'second');
    const seen: string[] = [];
    first.on('message', (_topic, payload) => seen.push(`first ${payload.toString()}`));
    second.on('message', (_topic, payload) => seen.push(`second ${payload.toString()}`));
    await first.subscribeAsync('m/x');
    const publisher = await client(port, 'publisher');
    await publisher.publishAsync('m/x', '1', { qos: 1 });
    await second.subscribeAsync('m/+');
    await publisher.publishAsync('m/x', '2', { qos: 1 });
    await first.unsubscribeAsync('m/x');
    await publisher.publishAsync('m/x', '3', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen.sort()).toEqual(['first 1', 'first 2', 'second 2', 'second 3']);
    // mqemitter keeps its trie where aedes.ts reaches it.
    const matcher = (aedes as unknown as { mq: { _matcher: Record<string, unknown> } }).mq._matcher;
    for (const name of ['match', 'add', 'remove', 'clear']) expect(typeof matcher[name]).toBe('function');
  });

  it("the message bus's backlog is a number (busBacklog)", async () => {
    await bareAedes();
    expect(busBacklog(aedes as Aedes)).toBe(0);
  });
});
