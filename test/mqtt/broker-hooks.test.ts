// What the site bridge and /metrics take from the broker (daemon/src/mqtt/broker.ts): an in-memory
// service identity valid on the loopback listener only (serviceCredential), and Mosquitto-like counts
// (messages received and sent, clients connected).
import { connectAsync } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { connectAs, readPem, SITE } from '../support/broker.js';
import { brokerPerTest } from '../support/per-test.js';
import { testPki } from '../support/pki.js';
import { until } from '../support/processes.js';

const perTest = brokerPerTest();
const { clients } = perTest;

describe('broker hooks for the bridge and /metrics', () => {
  it('a service credential logs in on loopback with its role, and nowhere else', async () => {
    const hub = await perTest.start();
    const { username, password } = hub.broker.serviceCredential('centre', 'console');
    const local = await connectAsync(`mqtt://127.0.0.1:${hub.tcpPort}`, {
      username,
      password,
      reconnectPeriod: 0,
    });
    clients.push(local);
    // Its role (console) is what the broker applies: it may read a box's status.
    const granted = await local.subscribeAsync(topics.status(SITE, 'cam-a'), { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    await expect(
      connectAsync(`mqtt://127.0.0.1:${hub.tcpPort}`, {
        username,
        password: `${password}x`,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      }),
    ).rejects.toThrow();
    // The same password over TLS: refused (the credential is the daemon's own, loopback only).
    await expect(
      connectAsync(`mqtts://127.0.0.1:${hub.mqttsPort}`, {
        ca: [readPem(testPki().ca)],
        username,
        password,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      }),
    ).rejects.toThrow();
  });

  it('counts messages received from clients, messages sent to them, and clients connected', async () => {
    const hub = await perTest.start();
    const { counters } = hub.broker;
    const siteConsole = await connectAs(hub, 'console');
    clients.push(siteConsole);
    await siteConsole.subscribeAsync(`outpost/v1/${SITE}/+/alert`, { qos: 1 });
    const cam = await connectAs(hub, 'cam-a');
    clients.push(cam);
    expect(hub.broker.clientsConnected()).toBe(2);
    const [received, sent] = [counters.messagesReceived, counters.messagesSent];
    const got: string[] = [];
    siteConsole.on('message', (topic) => got.push(topic));
    for (let i = 0; i < 3; i += 1)
      await cam.publishAsync(topics.alert(SITE, 'cam-a'), JSON.stringify({ id: `a-${i}` }), { qos: 1 });
    await until(() => got.length === 3, 5000, 'three alerts at the console');
    expect(counters.messagesReceived - received).toBe(3);
    expect(counters.messagesSent - sent).toBe(3);
    await cam.endAsync(true);
    await until(() => hub.broker.clientsConnected() === 1, 5000, 'one client left');
  });
});
