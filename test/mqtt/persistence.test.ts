// What the broker keeps on disk: queued QoS 1 messages for an offline persistent session and retained
// messages survive a kill -9 of the daemon; and a clean-session reconnect cannot make the broker
// acknowledge and drop a QoS 2 message (GHSA-p8r9-qf8w-p73r).
import { writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { connectAsync, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import {
  connectListening,
  connectPacket,
  hubDataDir,
  identitiesJson,
  P,
  PEOPLE,
  SITE,
} from '../support/broker.js';
import { brokerPerTest } from '../support/per-test.js';
import { freePort, runCli, until, writeTemp, type Run } from '../support/processes.js';

const perTest = brokerPerTest();
const clients = perTest.clients;
let daemon: Run | undefined;

afterEach(async () => {
  if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null) {
    daemon.child.kill('SIGKILL');
    await daemon.exited();
  }
  daemon = undefined;
});

async function loopbackClient(port: number, name: string, extra = {}): Promise<MqttClient> {
  const client = await connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: name,
    password: PEOPLE[name]?.password,
    reconnectPeriod: 0,
    ...extra,
  });
  clients.push(client);
  return client;
}

/** A hub daemon (the built CLI) on loopback with the test identities; `start()` runs it until it is up. */
async function hubDaemon() {
  const { dataDir, identitiesFile } = await hubDataDir();
  const port = await freePort();
  const config = await writeTemp(
    'outpost.yaml',
    `site: ${SITE}\ndevice: hub\ndataDir: ${dataDir}\nbroker:\n  tcp:\n    port: ${port}\n  identitiesFile: ${identitiesFile}\ncameras: []\n`,
  );
  const start = async () => {
    daemon = runCli(['run', '--config', config]);
    await daemon.waitForLog((line) => line.msg === 'outpost running');
  };
  return { port, identitiesFile, start };
}

describe('broker persistence', () => {
  it('QoS 1 messages queued for an offline persistent session, and retained status, survive kill -9', async () => {
    const { port, start } = await hubDaemon();
    await start();

    // The console subscribes with a persistent session, then goes away.
    const console1 = await loopbackClient(port, 'console', { clientId: 'console', clean: false });
    await console1.subscribeAsync(`${P}/+/alert`, { qos: 1 });
    await console1.endAsync();
    clients.splice(clients.indexOf(console1), 1);

    const cam = await loopbackClient(port, 'cam-a');
    for (let i = 0; i < 5; i += 1) await cam.publishAsync(`${P}/cam-a/alert`, `alert ${i}`, { qos: 1 });
    await cam.publishAsync(`${P}/cam-a/status`, 'online', { qos: 1, retain: true });
    await cam.endAsync();
    clients.splice(clients.indexOf(cam), 1);

    daemon?.child.kill('SIGKILL');
    await daemon?.exited();
    await start();

    const received: string[] = [];
    const console2 = await connectListening(
      `mqtt://127.0.0.1:${port}`,
      {
        username: 'console',
        password: PEOPLE.console?.password,
        clientId: 'console',
        clean: false,
        reconnectPeriod: 0,
      },
      (_topic, payload) => received.push(payload.toString()),
    );
    clients.push(console2);
    // On a timeout the toEqual below shows what did arrive.
    await until(() => received.length >= 5, 10_000, 'the five queued alerts').catch(() => undefined);
    expect(received).toEqual(['alert 0', 'alert 1', 'alert 2', 'alert 3', 'alert 4']);

    const retained: string[] = [];
    const viewer = await loopbackClient(port, 'alice');
    const admin = await loopbackClient(port, 'root');
    admin.on('message', (topic, payload) => retained.push(`${topic} ${payload.toString()}`));
    await admin.subscribeAsync(`${P}/cam-a/status`, { qos: 1 });
    // >= 1, so a second or wrong message fails the toEqual below with what arrived, not a timeout.
    await until(() => retained.length >= 1, 10_000, 'the retained status');
    expect(retained).toEqual([`${P}/cam-a/status online`]);
    expect(viewer.connected).toBe(true);
  });

  it("after kill -9, a client's last will is published only on its own identity's status, and only while that identity exists", async () => {
    const { port, identitiesFile, start } = await hubDaemon();
    await start();
    const will = (device: string, text: string) => ({
      will: { topic: `${P}/${device}/status`, payload: Buffer.from(text), qos: 1 as const, retain: false },
    });
    // Each will is allowed at CONNECT: a device's own status, and an admin's on any topic.
    await loopbackClient(port, 'cam-a', { clientId: 'cam-a.w', ...will('cam-a', 'cam-a will') });
    await loopbackClient(port, 'root', { clientId: 'root.w', ...will('cam-b', 'root will for cam-b') });
    await loopbackClient(port, 'cam-b', { clientId: 'cam-b.w', ...will('cam-b', 'cam-b will') });
    daemon?.child.kill('SIGKILL');
    await daemon?.exited();
    await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
    // cam-b is removed while the daemon is down.
    const withoutCamB = Object.fromEntries(Object.entries(PEOPLE).filter(([name]) => name !== 'cam-b'));
    await writeFile(identitiesFile, await identitiesJson(withoutCamB));
    await start();

    const seen: string[] = [];
    const watcher = await loopbackClient(port, 'console');
    watcher.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
    await watcher.subscribeAsync([`${P}/cam-a/status`, `${P}/cam-b/status`], { qos: 1 });
    // Wills of an earlier run are swept every 20 s (broker.ts, heartbeatInterval).
    await until(() => seen.length > 0, 45_000, "cam-a's will from the killed run");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(seen).toEqual([`${P}/cam-a/status cam-a will`]);
  });

  it('a clean-session reconnect reusing a QoS 2 message id still gets its message delivered', async () => {
    const hub = await perTest.start();
    const watcher = await loopbackClient(hub.tcpPort, 'console');
    const seen: string[] = [];
    watcher.on('message', (_topic, payload) => seen.push(payload.toString()));
    await watcher.subscribeAsync(`${P}/cam-a/alert`, { qos: 2 });

    // Session 1: a QoS 2 publish whose handshake is cut before PUBREL (the broker holds its dedup entry).
    const first = await rawSession(hub.tcpPort);
    await first.send(qos2Alert('first'));
    await first.expect('pubrec');
    first.socket.destroy();
    await until(() => seen.includes('first'), 5000, 'the first message');

    // The broker restarts in between, as after a power cut: the state on disk must not matter.
    await hub.restart();
    await watcher.endAsync(true);
    clients.splice(clients.indexOf(watcher), 1);
    const watcher2 = await loopbackClient(hub.tcpPort, 'console');
    watcher2.on('message', (_topic, payload) => seen.push(payload.toString()));
    await watcher2.subscribeAsync(`${P}/cam-a/alert`, { qos: 2 });

    // Session 2, clean, same client id, same message id: a new message, to be delivered.
    const second = await rawSession(hub.tcpPort);
    await second.send(qos2Alert('second'));
    await second.expect('pubrec');
    await second.send({ cmd: 'pubrel', messageId: 42 });
    await second.expect('pubcomp');
    await until(
      () => seen.includes('second'),
      5000,
      'the second message (dropped as a duplicate before the fix)',
    );
    second.socket.destroy();
  });
});

/** A bare MQTT 3.1.1 connection as cam-a (client id cam-a.raw, clean session) speaking packets by hand. */
async function rawSession(port: number): Promise<{
  socket: Socket;
  send(packet: Record<string, unknown>): Promise<void>;
  expect(cmd: string): Promise<void>;
}> {
  const socket = createConnection({ host: '127.0.0.1', port });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const received: string[] = [];
  socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  parser.on('packet', (packet: { cmd: string }) => received.push(packet.cmd));
  const session = {
    socket,
    send: (packet: Record<string, unknown>) =>
      new Promise<void>((resolve, reject) =>
        socket.write(mqttPacket.generate(packet as unknown as mqttPacket.Packet), (error) =>
          error ? reject(error) : resolve(),
        ),
      ),
    expect: async (cmd: string) => {
      await until(() => received.includes(cmd), 5000, `a ${cmd} from the broker`);
      received.splice(received.indexOf(cmd), 1);
    },
  };
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  await session.send({ ...connectPacket('cam-a.raw', 'cam-a') });
  await session.expect('connack');
  return session;
}

/** cam-a's QoS 2 alert PUBLISH with message id 42, as both sessions send it. */
function qos2Alert(payload: string): Record<string, unknown> {
  return {
    cmd: 'publish',
    topic: `${P}/cam-a/alert`,
    payload,
    qos: 2,
    messageId: 42,
    retain: false,
    dup: false,
  };
}
