// The embedded broker as a provisioned hub runs it, with real foreign clients: Debian's mosquitto_pub
// and mosquitto_sub, and MQTT.js, over TLS, secure WebSocket and loopback TCP.
import { readFile, stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  connect,
  connectAsync,
  MqttClient as MqttClientClass,
  type IClientOptions,
  type MqttClient,
} from 'mqtt';
import { describe, expect, it } from 'vitest';
import { LOCAL_ADMIN } from '../../daemon/src/mqtt/local-admin.js';
import {
  connectAs,
  connectPacket,
  mosquittoTls,
  P,
  PEOPLE,
  readPem,
  recordingLogger,
  run,
} from '../support/broker.js';
import { brokerPerTest } from '../support/per-test.js';
import { testPki } from '../support/pki.js';
import { until } from '../support/processes.js';

const perTest = brokerPerTest();
const { clients } = perTest;

async function client(name: string, extra = {}, transport: 'mqtts' | 'wss' = 'mqtts'): Promise<MqttClient> {
  const { hub } = perTest;
  const made = await connectAs(hub, name, extra, transport);
  clients.push(made);
  return made;
}

/** Collects every message a client receives, as `topic payload` lines. */
function inbox(mqtt: MqttClient): string[] {
  const lines: string[] = [];
  mqtt.on('message', (topic, payload) => lines.push(`${topic} ${payload.toString()}`));
  return lines;
}

/** What the console account receives, subscribed at QoS 1 to `filter`. */
async function consoleReading(filter: string | string[]): Promise<string[]> {
  const reader = await client('console');
  const seen = inbox(reader);
  await reader.subscribeAsync(filter, { qos: 1 });
  return seen;
}

/** The QoS granted per filter (128 = refused). MQTT.js rejects a SUBACK with any 128, keeping the packet. */
async function grants(mqtt: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await mqtt.subscribeAsync(filters, { qos: 1 })).map((grant) => grant.qos);
  } catch (error) {
    const packet = (error as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw error;
    return packet.granted;
  }
}

/**
 * Connect with the inbox attached before CONNACK: a persistent session's queued messages follow the
 * CONNACK at once, before connectAsync's promise would let a handler be attached.
 */
async function connectWithInbox(
  name: string,
  extra: IClientOptions,
): Promise<{ client: MqttClient; seen: string[]; sessionPresent: boolean }> {
  const { hub } = perTest;
  const made = connect(`mqtts://127.0.0.1:${hub.mqttsPort}`, {
    ca: [readPem(testPki().ca)],
    username: name,
    password: PEOPLE[name]?.password,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...extra,
  });
  clients.push(made);
  const seen = inbox(made);
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
    made.once('connect', resolve);
    made.once('error', reject);
  });
  return { client: made, seen, sessionPresent: connack.sessionPresent };
}

/** A bare CONNECT with a password; resolves with the CONNACK return code (-1: closed without one). */
async function rawLogin(port: number, username: string, password: string): Promise<number> {
  const mqttPacket = (await import('mqtt-packet')).default;
  const { createConnection } = await import('node:net');
  const socket = createConnection({ host: '127.0.0.1', port });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  socket.on('error', () => undefined);
  socket.write(
    mqttPacket.generate(connectPacket(`flood-${Math.random().toString(16).slice(2)}`, username, password)),
  );
  return new Promise((resolve) => {
    const timer = setTimeout(() => socket.destroy(), 30_000);
    parser.on('packet', (packet: { cmd: string; returnCode?: number }) => {
      if (packet.cmd !== 'connack') return;
      clearTimeout(timer);
      socket.destroy();
      resolve(packet.returnCode ?? -1);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(-1);
    });
  });
}

/** `name` opens a persistent session as `clientId`, subscribes to `filter` and goes away. */
async function leaveSession(name: string, clientId: string, filter: string): Promise<void> {
  const first = await client(name, { clientId, clean: false });
  await first.subscribeAsync(filter, { qos: 1 });
  await first.endAsync();
}

/**
 * `name` comes back to its persistent session, subscribes to chat too, and alice sends a marker: what
 * arrived up to the marker (queued messages first), and whether the broker had kept the session.
 */
async function backUntilMarker(
  name: string,
  clientId: string,
  alice: MqttClient,
): Promise<{ seen: string[]; sessionPresent: boolean }> {
  const { client: again, seen, sessionPresent } = await connectWithInbox(name, { clientId, clean: false });
  await again.subscribeAsync(`${P}/chat/+`, { qos: 1 });
  await alice.publishAsync(`${P}/chat/ops`, 'marker', { qos: 1 });
  await until(() => seen.some((line) => line.includes('marker')), 5000, 'the marker chat message');
  return { seen, sessionPresent };
}

/**
 * A console reading `chat/+`, and alice to write. `delivered(n)` waits for n chat messages (and 200 ms
 * more, for one too many to show) and gives their topics in order.
 */
async function chatPair(): Promise<{ alice: MqttClient; delivered: (count: number) => Promise<string[]> }> {
  const seen = await consoleReading(`${P}/chat/+`);
  const alice = await client('alice');
  const delivered = async (count: number): Promise<string[]> => {
    await until(() => seen.length === count, 5000, `${count} chat messages`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    return seen.map((line) => line.split(' ')[0]!);
  };
  return { alice, delivered };
}

/** MQTT.js over TLS with a client certificate and no password. */
function withCertificate(files: { cert: string; key: string }): Promise<MqttClient> {
  const { hub } = perTest;
  return connectAsync(`mqtts://127.0.0.1:${hub.mqttsPort}`, {
    ca: [readPem(testPki().ca)],
    cert: readPem(files.cert),
    key: readPem(files.key),
    reconnectPeriod: 0,
    connectTimeout: 3000,
  });
}

function closed(mqtt: MqttClient): Promise<void> {
  return new Promise((resolve) => mqtt.once('close', () => resolve()));
}

describe('embedded broker: authentication', () => {
  it('mosquitto_pub and mosquitto_sub with the site CA and a password carry a retained message over TLS', async () => {
    const hub = await perTest.start();
    const topic = `${P}/cam-a/status`;
    const retainedOnline = ['-t', topic, '-m', 'online', '-r', '-q', '1'];
    const published = await run('mosquitto_pub', [...mosquittoTls(hub, 'cam-a'), ...retainedOnline]);
    expect(published.code, published.stderr).toBe(0);
    const oneMessage = ['-t', topic, '-C', '1', '-W', '5', '-v'];
    const received = await run('mosquitto_sub', [...mosquittoTls(hub, 'console'), ...oneMessage]);
    expect(received.code, received.stderr).toBe(0);
    expect(received.stdout.trim()).toBe(`${topic} online`);
  });

  it('a wrong password, an unknown user and no credentials are refused', async () => {
    const hub = await perTest.start();
    for (const args of [
      mosquittoTls(hub, 'cam-a', 'wrong'),
      mosquittoTls(hub, 'mallory', 'pw-cam-a'),
      ['-h', '127.0.0.1', '-p', String(hub.mqttsPort), '--cafile', testPki().ca],
    ]) {
      const result = await run('mosquitto_pub', [...args, '-t', `${P}/cam-a/x`, '-m', 'x']);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/not authori[sz]ed/i);
    }
    expect(hub.broker.counters.authFailures).toBe(3);
  });

  it('a client certificate signed by the site CA authenticates its CN; one from another CA does not', async () => {
    await perTest.start();
    const pki = testPki();
    const viaCert = await withCertificate(pki.client('console'));
    clients.push(viaCert);
    await viaCert.subscribeAsync(`${P}/#`);
    await expect(withCertificate(pki.rogueClient('console'))).rejects.toThrow(/Not authorized/i);
    // A site certificate whose CN is not allowed to use certificates (cam-a) is refused too.
    await expect(withCertificate(pki.client('cam-a'))).rejects.toThrow(/Not authorized/i);
  });

  it('TLS below 1.2 is refused', async () => {
    const hub = await perTest.start();
    const port = hub.mqttsPort;
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port,
        ca: readPem(testPki().ca),
        maxVersion: 'TLSv1.1',
        minVersion: 'TLSv1',
        // Let this client offer TLS 1.1 at all, so a refusal can only come from the broker.
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      socket.once('secureConnect', () => resolve('connected'));
      socket.once('error', (error: Error) => resolve(`error: ${error.message}`));
    });
    // The broker answers with a protocol_version alert.
    expect(outcome).toMatch(/alert protocol version/);
  });

  it('the local-admin credential works on loopback only, and its file is 0600', async () => {
    const hub = await perTest.start();
    const file = hub.broker.localAdminFile;
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const password = (await readFile(file, 'utf8')).trim();
    const local = await connectAsync(`mqtt://127.0.0.1:${hub.tcpPort}`, {
      username: LOCAL_ADMIN,
      password,
      reconnectPeriod: 0,
    });
    clients.push(local);
    const viaTls = await run('mosquitto_pub', [
      ...mosquittoTls(hub, LOCAL_ADMIN, password),
      '-t',
      'x',
      '-m',
      'x',
    ]);
    expect(viaTls.code).not.toBe(0);
    // No credentials on loopback either: localhost is not a free pass.
    const anonymous = await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(hub.tcpPort),
      '-t',
      'x',
      '-m',
      'x',
    ]);
    expect(anonymous.stderr).toMatch(/not authori[sz]ed/i);
  });

  it("a client id in another identity's namespace is rejected (0x02), so nobody can take over a session", async () => {
    await perTest.start();
    await client('cam-a', { clientId: 'cam-a' });
    await expect(client('cam-b', { clientId: 'cam-a' })).rejects.toThrow(/Identifier rejected/i);
    await expect(client('cam-b', { clientId: 'cam-a.tool' })).rejects.toThrow(/Identifier rejected/i);
    // A persistent session must be in the identity's own namespace.
    await expect(client('cam-b', { clientId: 'random-id', clean: false })).rejects.toThrow(
      /Identifier rejected/i,
    );
    await client('cam-b', { clientId: 'cam-b.uplink', clean: false });
  });
});

describe('embedded broker: ACL', () => {
  it('a device cannot publish under another device prefix; the publish is dropped and it stays connected', async () => {
    const hub = await perTest.start();
    const seen = await consoleReading(`${P}/#`);
    const camA = await client('cam-a');
    await camA.publishAsync(`${P}/cam-b/alert`, 'forged', { qos: 1 });
    await camA.publishAsync(`${P}/cam-a/alert`, 'genuine', { qos: 1 });
    await until(() => seen.length > 0, 5000, 'the genuine alert');
    expect(seen).toEqual([`${P}/cam-a/alert genuine`]);
    expect(camA.connected).toBe(true);
    expect(hub.broker.counters.refusedPublish).toBe(1);
  });

  it('a device cannot subscribe to #, $SYS/# or another device; it may subscribe to its own cmd and chat', async () => {
    const hub = await perTest.start();
    const camA = await client('cam-a');
    const granted = await grants(camA, [
      '#',
      '$SYS/#',
      `${P}/cam-b/cmd/#`,
      `${P}/+/cmd/#`,
      `${P}/cam-a/cmd/#`,
      `${P}/chat/#`,
    ]);
    expect(granted).toEqual([128, 128, 128, 128, 1, 1]);
    expect(hub.broker.counters.refusedSubscribe).toBe(4);
  });

  it('the console reads the whole site and commands devices; staff only chat', async () => {
    await perTest.start();
    const consoleClient = await client('console');
    expect(await grants(consoleClient, [`${P}/#`, '#'])).toEqual([1, 128]);
    const camA = await client('cam-a');
    const camInbox = inbox(camA);
    await camA.subscribeAsync(`${P}/cam-a/cmd/#`, { qos: 1 });
    await consoleClient.publishAsync(`${P}/cam-a/cmd/ping`, '{"id":"1"}', { qos: 1 });
    await until(() => camInbox.length > 0, 5000, 'the command');
    const alice = await client('alice');
    expect(await grants(alice, [`${P}/chat/#`, `${P}/+/alert`])).toEqual([1, 128]);
  });

  it('chat is stamped with the authenticated sender and the broker clock; a forged sender is overwritten', async () => {
    await perTest.start();
    const seen = await consoleReading(`${P}/chat/#`);
    const alice = await client('alice');
    const before = Date.now();
    await alice.publishAsync(
      `${P}/chat/ops`,
      JSON.stringify({ text: 'gate 3 open', from: 'root', id: 'm1' }),
      { qos: 1 },
    );
    await alice.publishAsync(`${P}/chat/ops`, 'plain words', { qos: 1 });
    await alice.publishAsync(`${P}/chat/ops`, JSON.stringify({ text: 'x'.repeat(2049) }), { qos: 1 });
    await alice.publishAsync(`${P}/chat/ops`, Buffer.from([0x7b, 0xff, 0xfe]), { qos: 1 });
    await alice.publishAsync(`${P}/chat/ops`, JSON.stringify({ text: 'last' }), { qos: 1 });
    // `chat/#` also carries the broker's retained `chat/ops/history` updates: only the channel counts here.
    const channel = () => seen.filter((line) => line.startsWith(`${P}/chat/ops `));
    await until(() => channel().length >= 3, 5000, 'three chat messages');
    const messages = channel().map(
      (line) => JSON.parse(line.slice(line.indexOf(' ') + 1)) as Record<string, unknown>,
    );
    expect(messages.map((m) => [m.from, m.role, m.text])).toEqual([
      ['alice', 'staff', 'gate 3 open'],
      ['alice', 'staff', 'plain words'],
      ['alice', 'staff', 'last'],
    ]);
    expect(messages[0]?.id).toBe('m1');
    expect(messages[0]?.at).toBeGreaterThanOrEqual(before);
  });
  it('keeps the last messages per channel as retained history that survives a restart and cannot be forged', async () => {
    const hub = await perTest.start();
    const alice = await client('alice');
    for (const text of ['one', 'two', 'three']) await alice.publishAsync(`${P}/chat/ops`, text, { qos: 1 });
    await alice.publishAsync(`${P}/chat/ops/history`, JSON.stringify([{ from: 'root', text: 'forged' }]), {
      qos: 1,
    });
    await hub.restart();
    clients.splice(0);
    const seen = await consoleReading(`${P}/chat/ops/history`);
    await until(() => seen.length === 1, 5000, 'the retained history');
    const history = JSON.parse(seen[0]?.slice(seen[0].indexOf(' ') + 1) ?? '[]') as Array<{
      from: string;
      text: string;
    }>;
    expect(history.map((m) => `${m.from}: ${m.text}`)).toEqual(['alice: one', 'alice: two', 'alice: three']);
    await (await client('alice')).publishAsync(`${P}/chat/ops`, 'four', { qos: 1 });
    await until(() => seen.length === 2, 5000, 'the history update');
    expect(seen[1]).toContain('"text":"four"');
  });
});

describe('embedded broker: stamping hooks', () => {
  it('a second stamping hook is one more registration: its topics are stamped with the sender, others are not', async () => {
    const hub = await perTest.start();
    // An alert acknowledgement, as the console would send it: who acknowledged comes from the login.
    hub.broker.addStamp({
      name: 'ack',
      clearsRetain: false,
      owns: (topic) => topic.endsWith('/ack'),
      stamp: ({ payload, identity, now }) => {
        const body = JSON.parse(payload.toString()) as Record<string, unknown>;
        if (typeof body.alertId !== 'string') return { ok: false, reason: 'alertId missing' };
        return { ok: true, payload: Buffer.from(JSON.stringify({ ...body, by: identity.name, at: now })) };
      },
    });
    const reader = await client('root');
    const seen = inbox(reader);
    await reader.subscribeAsync(['a/ack', 'a/other'], { qos: 1 });
    const admin = await client('root');
    await admin.publishAsync('a/ack', JSON.stringify({ alertId: 'x1', by: 'mallory' }), { qos: 1 });
    await admin.publishAsync('a/ack', JSON.stringify({ nothing: true }), { qos: 1 });
    await admin.publishAsync('a/other', JSON.stringify({ by: 'mallory' }), { qos: 1 });
    await until(() => seen.length === 2, 5000, 'the stamped ack and the other message');
    const [ack, other] = seen.map(
      (line) => JSON.parse(line.slice(line.indexOf(' ') + 1)) as Record<string, unknown>,
    );
    expect(ack).toMatchObject({ alertId: 'x1', by: 'root' });
    expect(other).toEqual({ by: 'mallory' });
    expect(hub.broker.counters.refusedPublish).toBe(1);
  });
});

describe('embedded broker: chat history bounds', () => {
  it('a burst of chat rewrites the retained history at most once a second, ending with all of it', async () => {
    const hub = await perTest.start();
    const reader = await client('console');
    const histories: Array<Array<{ text: string }>> = [];
    reader.on('message', (topic, payload) => {
      if (topic.endsWith('/history'))
        histories.push(JSON.parse(payload.toString()) as Array<{ text: string }>);
    });
    await reader.subscribeAsync(`${P}/chat/ops/history`, { qos: 1 });
    const alice = await client('alice');
    const started = Date.now();
    for (let i = 0; i < 30; i += 1) await alice.publishAsync(`${P}/chat/ops`, `m${i}`, { qos: 1 });
    await until(() => histories.at(-1)?.length === 30, 5000, 'the history with all 30 messages');
    const seconds = (Date.now() - started) / 1000;
    // One update at once (a quiet channel), then at most one per second of the burst, plus the last.
    expect(histories.length).toBeLessThanOrEqual(Math.ceil(seconds) + 2);
    expect(histories.at(-1)?.map((m) => m.text)).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`));
    // Stop publishes what is pending: the restarted broker serves the whole burst.
    await alice.publishAsync(`${P}/chat/ops`, 'just before the restart', { qos: 1 });
    await hub.restart();
    clients.splice(0);
    const lateSeen = await consoleReading(`${P}/chat/ops/history`);
    await until(() => lateSeen.length === 1, 5000, 'the retained history');
    expect(lateSeen[0]).toContain('just before the restart');
  });

  it('a message opening a channel beyond broker.chatChannels is refused; known channels carry on', async () => {
    const hub = await perTest.start({ broker: { chatChannels: 2 } });
    const { alice, delivered } = await chatPair();
    for (const channel of ['one', 'two', 'three', 'one']) {
      await alice.publishAsync(`${P}/chat/${channel}`, `on ${channel}`, { qos: 1 });
    }
    expect(await delivered(3)).toEqual([`${P}/chat/one`, `${P}/chat/two`, `${P}/chat/one`]);
    expect(hub.broker.counters.refusedPublish).toBe(1);
    expect(alice.connected).toBe(true);
  });

  it('a new channel takes the place of one quiet for broker.chatChannelIdleSeconds, and its history goes', async () => {
    const hub = await perTest.start({ broker: { chatChannels: 2, chatChannelIdleSeconds: 2 } });
    const { alice, delivered } = await chatPair();
    await alice.publishAsync(`${P}/chat/one`, 'on one', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 2300));
    // `one` has been quiet for 2.3 s: `three` takes its place; `four` finds `two` and `three` active.
    for (const channel of ['two', 'three', 'four']) {
      await alice.publishAsync(`${P}/chat/${channel}`, `on ${channel}`, { qos: 1 });
    }
    expect(await delivered(3)).toEqual([`${P}/chat/one`, `${P}/chat/two`, `${P}/chat/three`]);
    expect(hub.broker.counters.refusedPublish).toBe(1);
    // The retained history of `one` is gone with it; the others keep theirs.
    const lateSeen = await consoleReading(`${P}/chat/+/history`);
    await until(() => lateSeen.length === 2, 5000, 'two retained histories');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(lateSeen.map((line) => line.split(' ')[0]).sort()).toEqual([
      `${P}/chat/three/history`,
      `${P}/chat/two/history`,
    ]);
  });
});

describe('embedded broker: review findings', () => {
  it('an empty topic level cannot smuggle unstamped chat, and chat and commands are never retained', async () => {
    const hub = await perTest.start();
    const seen = await consoleReading(`${P}/#`);
    const alice = await client('alice');
    const forged = JSON.stringify({ id: 'x', from: 'root', role: 'admin', text: 'evacuate', at: 1 });
    await alice.publishAsync(`${P}/chat/`, forged, { qos: 1, retain: true });
    await alice.publishAsync(`${P}/chat/Ops Room`, 'bad channel name', { qos: 1 });
    await alice.publishAsync(`${P}/chat/ops`, 'real', { qos: 1, retain: true });
    await (
      await client('console')
    ).publishAsync(`${P}/cam-a/cmd/ping`, '{"id":"r"}', { qos: 1, retain: true });
    await until(() => seen.some((line) => line.startsWith(`${P}/cam-a/cmd/ping`)), 5000, 'the command');
    expect(seen.filter((line) => line.includes('evacuate') || line.includes('bad channel'))).toEqual([]);
    expect(hub.broker.counters.refusedPublish).toBe(2);
    // A late subscriber gets the chat history, but no retained chat message or command.
    const lateSeen = await consoleReading([`${P}/chat/+`, `${P}/+/cmd/#`, `${P}/chat/ops/history`]);
    await until(() => lateSeen.length > 0, 5000, 'the retained history');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(lateSeen.map((line) => line.split(' ')[0])).toEqual([`${P}/chat/ops/history`]);
  });

  it('a last will on a topic the client may not publish to is refused at connect', async () => {
    await perTest.start();
    await expect(
      client('alice', {
        will: { topic: `${P}/cam-a/status`, payload: Buffer.from('online'), qos: 1, retain: true },
      }),
    ).rejects.toThrow(/Not authorized/i);
    await client('cam-a', {
      will: { topic: `${P}/cam-a/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
    });
  });

  it('a publish sent right before DISCONNECT and FIN is still delivered', async () => {
    const hub = await perTest.start();
    const seen = await consoleReading(`${P}/cam-a/alert`);
    const mqttPacket = (await import('mqtt-packet')).default;
    const { createConnection } = await import('node:net');
    const socket = createConnection({ host: '127.0.0.1', port: hub.tcpPort });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const connack = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write(mqttPacket.generate(connectPacket('cam-a.burst', 'cam-a')));
    await connack;
    // PUBLISH, DISCONNECT and FIN in one burst, as a short-lived sender does.
    socket.end(
      Buffer.concat([
        mqttPacket.generate({
          cmd: 'publish',
          topic: `${P}/cam-a/alert`,
          payload: Buffer.from('last words'),
          qos: 0,
          retain: false,
          dup: false,
        }),
        mqttPacket.generate({ cmd: 'disconnect' }),
      ]),
    );
    await until(() => seen.length === 1, 5000, 'the publish sent before FIN');
    expect(seen).toEqual([`${P}/cam-a/alert last words`]);
  });
});

describe('embedded broker: listeners and limits', () => {
  it('serves MQTT over secure WebSocket for browser consoles', async () => {
    await perTest.start();
    const viaWs = await client('console', {}, 'wss');
    const seen = inbox(viaWs);
    await viaWs.subscribeAsync(`${P}/+/telemetry`, { qos: 1 });
    const camA = await client('cam-a');
    await camA.publishAsync(`${P}/cam-a/telemetry`, '{"cpu":1}', { qos: 1 });
    await until(() => seen.length === 1, 5000, 'telemetry over wss');
    expect(seen[0]).toBe(`${P}/cam-a/telemetry {"cpu":1}`);
  });

  it('a packet over the size limit disconnects its sender; the broker serves the next client', async () => {
    const hub = await perTest.start({ limits: { maxPacketBytes: 4096 } });
    const camA = await client('cam-a');
    const gone = closed(camA);
    camA.publish(`${P}/cam-a/telemetry`, Buffer.alloc(10_000, 1), { qos: 0 });
    await gone;
    const camB = await client('cam-b');
    await camB.publishAsync(`${P}/cam-b/telemetry`, Buffer.alloc(1000, 1), { qos: 1 });
    expect(hub.broker.counters.limitDisconnects).toBe(1);
  });

  it('malformed bytes on the socket drop that connection only', async () => {
    const hub = await perTest.start();
    const watcher = await client('console');
    const port = hub.mqttsPort;
    const ended = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: readPem(testPki().ca) }, () => {
        socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x04, 0x4d]));
      });
      socket.on('data', () => undefined);
      socket.once('close', () => resolve('closed'));
      setTimeout(() => resolve('still open'), 5000).unref();
    });
    expect(ended).toBe('closed');
    const garbage = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: readPem(testPki().ca) }, () => {
        socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      });
      socket.on('data', () => undefined);
      socket.once('close', () => resolve('closed'));
      setTimeout(() => resolve('still open'), 5000).unref();
    });
    expect(garbage).toBe('closed');
    expect(watcher.connected).toBe(true);
    const next = await client('cam-b');
    await next.publishAsync(`${P}/cam-b/status`, 'online', { qos: 1 });
  });

  it('a client over its publish rate is disconnected; others keep going', async () => {
    const hub = await perTest.start({ limits: { maxPublishRate: 20 } });
    const flooder = await client('cam-a');
    const gone = closed(flooder);
    for (let i = 0; i < 200; i += 1) flooder.publish(`${P}/cam-a/telemetry`, String(i), { qos: 0 });
    await gone;
    expect(hub.broker.counters.limitDisconnects).toBe(1);
    const calm = await client('cam-b');
    await calm.publishAsync(`${P}/cam-b/telemetry`, 'ok', { qos: 1 });
  });

  it('survives a flood queued behind a subscriber that stops reading and then leaves', async () => {
    // 100 clients log in at once: all of them wait for their password check rather than being shed.
    const hub = await perTest.start({ limits: { maxPublishRate: 100_000, loginQueue: 200 } });
    // A subscriber that never reads: its socket fills, Aedes's delivery slots fill, messages queue.
    const stuck = await client('console');
    await stuck.subscribeAsync(`${P}/+/telemetry`, { qos: 0 });
    (stuck.stream as unknown as { pause(): void }).pause();
    // Logged in ten at a time: a hundred scrypt checks at once outlast MQTT.js's connect timeout on a
    // loaded machine, and the logins are not what this test is about.
    const flooders: MqttClient[] = [];
    for (let i = 0; i < 10; i += 1) {
      flooders.push(...(await Promise.all(Array.from({ length: 10 }, () => client('cam-a')))));
    }
    const payload = Buffer.alloc(64, 1);
    for (let round = 0; round < 300; round += 1) {
      for (const flooder of flooders) flooder.publish(`${P}/cam-a/telemetry`, payload, { qos: 0 });
    }
    await Promise.all(
      flooders.map((flooder) => flooder.publishAsync(`${P}/cam-a/telemetry`, 'last', { qos: 1 })),
    );
    // The subscriber leaves: the backlog now matches nobody and drains at once.
    stuck.stream.destroy();
    const after = await client('cam-b');
    await after.publishAsync(`${P}/cam-b/status`, 'still here', { qos: 1 });
    expect(hub.broker.healthy()).toBe(true);
  });

  it('a standard client with keep-alive 0, or any keep-alive up to 65535, connects over TLS and WSS', async () => {
    const hub = await perTest.start();
    for (const keepalive of [0, 3600, 65535]) {
      const made = await client('cam-a', { keepalive });
      await made.publishAsync(`${P}/cam-a/telemetry`, '{}', { qos: 1 });
    }
    await client('console', { keepalive: 0 }, 'wss');
    // mosquitto_pub itself will not send a keep-alive below 5; the broker takes its maximum.
    const published = await run('mosquitto_pub', [
      ...mosquittoTls(hub, 'cam-b'),
      '-k',
      '65535',
      '-t',
      `${P}/cam-b/status`,
      '-m',
      'online',
    ]);
    expect(published.code, published.stderr).toBe(0);
  });

  it('every accepted connection is probed by TCP keep-alive after broker.limits.tcpKeepAliveSeconds of silence', async () => {
    await perTest.start({ limits: { tcpKeepAliveSeconds: 45 } });
    const silent = await client('cam-a', { keepalive: 0 });
    const local = (silent.stream as unknown as { localPort?: number }).localPort;
    // The broker's end of the connection (its peer is this client's port), as the kernel reports it.
    const sockets = await run('ss', ['-tnoH', 'state', 'established', `( dport = :${local} )`]);
    expect(sockets.stdout).toMatch(/timer:\(keepalive,(4[0-5]|[1-3]\d|\d)(\.\d+)?sec/);
  });
});

describe('embedded broker: login floods', () => {
  it('a flood of bad logins is shed beyond a few scrypt checks at a time; a good client still gets in', async () => {
    const hub = await perTest.start({ limits: { loginConcurrency: 2, loginQueue: 8 } });
    const port = hub.tcpPort;
    const flood = Array.from({ length: 300 }, (_, i) =>
      rawLogin(port, i % 2 ? 'cam-a' : `nobody-${i}`, 'wrong'),
    );
    // Let the flood's CONNECTs reach the broker first, then a good client tries, retrying when shed.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    let good: MqttClient | undefined;
    let goodShed = 0;
    while (!good) {
      try {
        good = await connectAsync(`mqtt://127.0.0.1:${port}`, {
          username: 'cam-b',
          password: PEOPLE['cam-b']?.password,
          reconnectPeriod: 0,
          connectTimeout: 10_000,
        });
      } catch (error) {
        expect(String(error)).toMatch(/Server unavailable/i);
        goodShed += 1;
        if (Date.now() - started > 5000) throw new Error('the good client did not get in within 5 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    clients.push(good);
    const took = Date.now() - started;
    const codes = await Promise.all(flood);
    // Without the gate, the good check waits behind ~300 scrypt runs (seconds on two cores).
    expect(took).toBeLessThan(3000);
    expect(codes.filter((code) => code === 3).length + goodShed).toBe(hub.broker.counters.loginsShed);
    expect(hub.broker.counters.loginsShed).toBeGreaterThan(200);
    expect(codes.filter((code) => code !== 3).every((code) => code === 5)).toBe(true);
    expect(hub.broker.counters.loginsPeakInFlight).toBe(2);
  });

  it('logins are checked in turn by address: a client beside a flood from another address is not shed or held up', async () => {
    const hub = await perTest.start({ limits: { loginConcurrency: 2, loginQueue: 16 } });
    const port = hub.tcpPort;
    const flood = Array.from({ length: 300 }, (_, i) => rawLogin(port, `nobody-${i}`, 'wrong'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    // 127.0.0.2 is loopback too: the good client comes from another address than the flood's.
    const tries: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const started = Date.now();
      const good = new MqttClientClass(
        () => createConnection({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }),
        {
          username: 'cam-b',
          password: PEOPLE['cam-b']?.password,
          reconnectPeriod: 0,
          connectTimeout: 10_000,
          protocolVersion: 4,
        },
      );
      clients.push(good);
      await new Promise<void>((resolve, reject) => {
        good.once('connect', () => resolve());
        good.once('error', reject);
      });
      tries.push(Date.now() - started);
      // More of the flood, so that the queue is full of it again for the next try.
      flood.push(...Array.from({ length: 50 }, (_, j) => rawLogin(port, `nobody-x${i}-${j}`, 'wrong')));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const codes = await Promise.all(flood);
    expect(codes.filter((code) => code === 3).length).toBe(hub.broker.counters.loginsShed);
    // The queue (16) is full of 127.0.0.1's flood each time: the good login takes one of its places.
    expect(hub.broker.counters.loginsShed).toBeGreaterThan(300);
    // Each good login waits for the running checks and one more of the flood's, never its whole queue
    // (a check is ~50 ms of scrypt, more on a loaded machine).
    expect(Math.max(...tries)).toBeLessThan(1500);
  });

  it('an address that keeps failing on a LAN listener backs off; loopback and other addresses are not held up', async () => {
    const hub = await perTest.start();
    for (let i = 0; i < 5; i += 1) {
      await expect(connectAs(hub, 'cam-a', { password: 'wrong' })).rejects.toThrow(/Not authorized/i);
    }
    // Even the right password is not checked while 127.0.0.1 backs off on the TLS listener.
    await expect(connectAs(hub, 'cam-a')).rejects.toThrow(/Server unavailable/i);
    expect(hub.broker.counters.loginsBackedOff).toBe(1);
    clients.push(
      await connectAsync(`mqtt://127.0.0.1:${hub.tcpPort}`, {
        username: 'cam-a',
        password: PEOPLE['cam-a']?.password,
        reconnectPeriod: 0,
      }),
    );
    // The first backoff lasts 1 s.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    clients.push(await connectAs(hub, 'cam-a'));
  });
});

describe('embedded broker: identities reload', () => {
  it('a revoked identity is disconnected on reload and refused after; other clients stay', async () => {
    const hub = await perTest.start();
    const camA = await client('cam-a');
    const camB = await client('cam-b');
    const gone = closed(camB);
    const rest = Object.fromEntries(Object.entries(PEOPLE).filter(([name]) => name !== 'cam-b'));
    await hub.writeIdentities(rest);
    await hub.broker.reloadIdentities();
    await gone;
    expect(camA.connected).toBe(true);
    await expect(client('cam-b')).rejects.toThrow(/Not authorized/i);
  });

  it("a demoted console's persistent session receives nothing it may no longer read, queued or new", async () => {
    const hub = await perTest.start();
    await leaveSession('console', 'console', `${P}/#`);
    const camA = await client('cam-a');
    await camA.publishAsync(`${P}/cam-a/alert`, 'queued before the reload', { qos: 1 });
    await hub.writeIdentities({ ...PEOPLE, console: { role: 'staff', password: 'pw-console' } });
    await hub.broker.reloadIdentities();
    await camA.publishAsync(`${P}/cam-a/alert`, 'published after the reload', { qos: 1 });
    const alice = await client('alice');
    await alice.publishAsync(`${P}/chat/ops`, 'chat after the reload', { qos: 1 });

    const { seen } = await backUntilMarker('console', 'console', alice);
    // Only the marker: the alerts are not the staff's to read, and `P/#` is no longer its subscription.
    expect(seen.map((line) => line.split(' ')[0])).toEqual([`${P}/chat/ops`]);
    // The queued alert was dropped at delivery; the later ones were never queued.
    expect(hub.broker.counters.refusedDeliveries).toBe(1);
  });

  it('identities changed while the broker was down are applied to persisted sessions at start', async () => {
    const hub = await perTest.start();
    await leaveSession('console', 'console', `${P}/#`);
    await hub.broker.stop();
    await hub.writeIdentities({ ...PEOPLE, console: { role: 'staff', password: 'pw-console' } });
    await hub.restart();
    clients.splice(0);
    const camA = await client('cam-a');
    await camA.publishAsync(`${P}/cam-a/alert`, 'after the restart', { qos: 1 });
    const alice = await client('alice');
    const { seen } = await backUntilMarker('console', 'console', alice);
    expect(seen.map((line) => line.split(' ')[0])).toEqual([`${P}/chat/ops`]);
    // `P/#` was removed from the stored session at start: the alert was never queued for it.
    expect(hub.broker.counters.refusedDeliveries).toBe(0);
  });

  it("a removed identity's persisted session is forgotten: queue and subscriptions do not come back with it", async () => {
    const hub = await perTest.start();
    await leaveSession('cam-b', 'cam-b.session', `${P}/chat/#`);
    const alice = await client('alice');
    await alice.publishAsync(`${P}/chat/ops`, 'queued for cam-b', { qos: 1 });
    const withoutCamB = Object.fromEntries(Object.entries(PEOPLE).filter(([name]) => name !== 'cam-b'));
    await hub.writeIdentities(withoutCamB);
    await hub.broker.reloadIdentities();
    expect(hub.broker.counters.forgottenSessions).toBe(1);
    await expect(client('cam-b', { clientId: 'cam-b.session', clean: false })).rejects.toThrow(
      /Not authorized/i,
    );
    // Provisioned again under the same name: a fresh start, not the revoked one's session.
    await hub.writeIdentities(PEOPLE);
    await hub.broker.reloadIdentities();
    const { seen, sessionPresent } = await backUntilMarker('cam-b', 'cam-b.session', alice);
    expect(sessionPresent).toBe(false);
    expect(seen.filter((line) => line.includes('queued for cam-b'))).toEqual([]);
  });

  it('a clean stop does not call the wills of its own clients ones of an earlier broker run', async () => {
    const { log, lines } = recordingLogger();
    const hub = await perTest.start({ log });
    // The hub's own uplink: connected with a last will when the broker stops under it.
    await client('cam-a', {
      clientId: 'cam-a.uplink',
      clean: false,
      will: { topic: `${P}/cam-a/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    await hub.stop();
    const wills = lines.filter((line) => String(line.msg).includes('last will'));
    expect(wills.map((line) => line.msg)).not.toContain(
      'last will of a client of an earlier broker run published',
    );
    expect(wills.map((line) => line.msg)).not.toContain(
      'last will of a client of an earlier broker run refused; dropped',
    );
  });

  it('a broken identities file on reload keeps the identities in force', async () => {
    const hub = await perTest.start();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(hub.identitiesFile, '{"version": 1, "site": "plant", "identities": [{"name": "x"');
    await hub.broker.reloadIdentities();
    await client('cam-a');
  });
});
