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
import {
  busBacklog,
  connectedClient,
  connectedClients,
  createAedes,
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
    prepareClient(connectedClient(broker, 'prepared') as AedesClient);
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

  it("the message bus's backlog is a number (busBacklog)", async () => {
    await bareAedes();
    expect(busBacklog(aedes as Aedes)).toBe(0);
  });
});
