// The daemon's uplink: store-and-forward to the hub across a hub outage and a daemon restart, the
// retained status with its last will, and the same uplink against Debian's mosquitto as the hub.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { configSchema, type Config } from '../../daemon/src/config/schema.js';
import { alertPayload, statusPayload } from '../../daemon/src/mqtt/contract.js';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { LevelStore } from '../../daemon/src/mqtt/level-store.js';
import { Uplink } from '../../daemon/src/mqtt/uplink.js';
import { connectAs, PEOPLE, run, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { cameraBoxConfig } from '../support/box.js';
import { testPki } from '../support/pki.js';
import { freePort, runCli, tempDir, until, type Run } from '../support/processes.js';

const log = pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
let hub: TestBroker | undefined;
const uplinks: Uplink[] = [];
const children: ChildProcess[] = [];
const daemons: Run[] = [];

afterEach(async () => {
  await Promise.all(uplinks.splice(0).map((uplink) => uplink.stop()));
  await hub?.stop();
  hub = undefined;
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const daemon of daemons.splice(0)) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGKILL');
    await daemon.exited();
  }
});

const noLocalBroker = {
  address: () => undefined,
  selfCredential: () => ({ username: '', password: '' }),
};

async function cameraConfig(hubPort: number, dataDir: string, device = 'cam-a'): Promise<Config> {
  const passwordFile = join(dataDir, 'uplink.password');
  await writeFile(passwordFile, `${PEOPLE[device]?.password}\n`, { mode: 0o600 });
  return configSchema.parse({
    site: SITE,
    device,
    role: 'camera',
    dataDir,
    cameras: [],
    uplink: { url: `mqtts://127.0.0.1:${hubPort}`, ca: testPki().ca, username: device, passwordFile },
  });
}

async function startUplink(config: Config): Promise<Uplink> {
  const uplink = new Uplink(config, noLocalBroker, log);
  await uplink.start();
  uplinks.push(uplink);
  return uplink;
}

async function stopUplink(uplink: Uplink): Promise<void> {
  await uplink.stop();
  uplinks.splice(uplinks.indexOf(uplink), 1);
}

function alert(uplink: Uplink, i: number) {
  const payload = {
    ...uplink.stamp(),
    id: `a-${i}`,
    device: 'cam-a',
    kind: 'panic' as const,
    severity: 'critical' as const,
    state: 'raised' as const,
    message: `press ${i}`,
    trigger: 'cli' as const,
  };
  alertPayload.parse(payload);
  uplink.publish(topics.alert(SITE, 'cam-a'), payload, { qos: 1 });
}

describe('uplink', () => {
  it('500 alerts published while the hub is down, across a daemon restart, all reach the console in order', async () => {
    hub = await startTestBroker();
    // The console has a persistent session on the hub, then goes away for the whole outage.
    const console1 = await connectAs(hub, 'console', { clientId: 'console', clean: false });
    await console1.subscribeAsync(topics.alert(SITE, '+'), { qos: 1 });
    await console1.endAsync();
    const hubPort = hub.mqttsPort;
    await hub.broker.stop();

    const dataDir = await tempDir('outpost-camera-');
    const config = await cameraConfig(hubPort, dataDir);
    const first = await startUplink(config);
    for (let i = 0; i < 250; i += 1) alert(first, i);
    await until(() => first.pending() === 250, 10_000, 'the first 250 alerts on disk');
    await stopUplink(first);

    const second = await startUplink(config);
    expect(second.pending()).toBe(250);
    for (let i = 250; i < 500; i += 1) alert(second, i);
    await until(() => second.pending() === 500, 10_000, 'all 500 alerts on disk');

    await hub.restart();
    await until(() => second.pending() === 0, 60_000, 'the store to drain to the hub');

    const received: string[] = [];
    const console2 = await connectAs(
      hub,
      'console',
      { clientId: 'console', clean: false },
      'mqtts',
      (_topic, payload) => {
        received.push(alertPayload.parse(JSON.parse(payload.toString())).id);
      },
    );
    await until(() => received.length >= 500, 30_000, 'the console to receive 500 alerts');
    await console2.endAsync();
    // QoS 1 allows a duplicate after a cut; the payload id makes it visible, and order holds.
    const unique = received.filter((id, index) => received.indexOf(id) === index);
    expect(unique).toEqual(Array.from({ length: 500 }, (_, i) => `a-${i}`));
  });

  it('stop() with acknowledgements in flight ends the connection and leaves nothing acknowledged in the store', async () => {
    hub = await startTestBroker({ limits: { maxPublishRate: 100_000 } });
    const received: string[] = [];
    const watcher = await connectAs(hub, 'console');
    watcher.on('message', (_topic, payload) => {
      received.push(alertPayload.parse(JSON.parse(payload.toString())).id);
    });
    await watcher.subscribeAsync(topics.alert(SITE, 'cam-a'), { qos: 1 });
    const dataDir = await tempDir('outpost-camera-');
    const config = await cameraConfig(hub.mqttsPort, dataDir);
    const warnings: string[] = [];
    const first = new Uplink(
      config,
      noLocalBroker,
      pino({ level: 'warn' }, { write: (line) => warnings.push(line) }),
    );
    await first.start();
    uplinks.push(first);
    // Which alerts the hub acknowledged, as the uplink's MQTT.js client saw it.
    const client = (first as unknown as { client: MqttClient }).client;
    const sentAs = new Map<number, string>();
    const acknowledged = new Set<string>();
    client.on('packetsend', (packet) => {
      if (packet.cmd === 'publish' && packet.messageId !== undefined && packet.topic.endsWith('/alert'))
        sentAs.set(packet.messageId, alertPayload.parse(JSON.parse(packet.payload.toString())).id);
    });
    client.on('packetreceive', (packet) => {
      const id =
        packet.cmd === 'puback' && packet.messageId !== undefined ? sentAs.get(packet.messageId) : undefined;
      if (id) acknowledged.add(id);
    });
    await until(() => first.connected(), 10_000, 'the uplink to connect');
    for (let i = 0; i < 2000; i += 1) alert(first, i);
    await stopUplink(first);
    // Stopped means stopped: nothing more arrives from the first run.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const afterStop = received.length;
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(received.length).toBe(afterStop);
    expect(acknowledged.size).toBeGreaterThan(0);
    // Nothing the hub acknowledged is left in the store (it would be sent twice), and nothing failed.
    const store = new LevelStore(join(dataDir, 'uplink'));
    await store.open();
    const stored: string[] = [];
    for await (const packet of store.createStream() as unknown as AsyncIterable<{
      topic: string;
      payload: Buffer;
    }>) {
      if (packet.topic.endsWith('/alert'))
        stored.push(alertPayload.parse(JSON.parse(packet.payload.toString())).id);
    }
    await new Promise<void>((resolve) => store.close(() => resolve()));
    expect(stored.filter((id) => acknowledged.has(id))).toEqual([]);
    expect(warnings).toEqual([]);
    // Acknowledged or stored: every alert is in one place or the other, and the next run sends the rest.
    expect(new Set([...acknowledged, ...stored]).size).toBe(2000);
    const second = await startUplink(config);
    await until(() => new Set(received).size === 2000 && second.pending() === 0, 40_000, 'all 2000 alerts');
    await watcher.endAsync();
  });

  it('status is retained online while connected and turns offline through the last will on kill -9', async () => {
    hub = await startTestBroker();
    const { file } = await cameraBoxConfig(hub.mqttsPort, ['cameras: []']);
    const daemon = runCli(['run', '--config', file]);
    daemons.push(daemon);
    await daemon.waitForLog((line) => line.msg === 'uplink connected');

    const states: string[] = [];
    const watcher = await connectAs(hub, 'console');
    watcher.on('message', (_topic, payload) => {
      states.push(statusPayload.parse(JSON.parse(payload.toString())).state);
    });
    await watcher.subscribeAsync(topics.status(SITE, 'cam-a'), { qos: 1 });
    await until(() => states.length === 1, 5000, 'the retained status');
    expect(states).toEqual(['online']);
    daemon.child.kill('SIGKILL');
    await until(() => states.length === 2, 90_000, 'the last will (after the keep-alive runs out)');
    expect(states).toEqual(['online', 'offline']);
    await watcher.endAsync();
  });

  it('works against Debian mosquitto with TLS and a password file as the hub', async () => {
    const pki = testPki();
    const dir = await tempDir('outpost-mosquitto-');
    const port = await freePort();
    const passwords = join(dir, 'passwords');
    for (const name of ['cam-a', 'console']) {
      const made = await run('mosquitto_passwd', [
        ...(name === 'cam-a' ? ['-c'] : []),
        '-b',
        passwords,
        name,
        PEOPLE[name]?.password ?? '',
      ]);
      expect(made.code, made.stderr).toBe(0);
    }
    const conf = join(dir, 'mosquitto.conf');
    await writeFile(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        `cafile ${pki.ca}`,
        `certfile ${pki.serverCert}`,
        `keyfile ${pki.serverKey}`,
        'tls_version tlsv1.2',
        'allow_anonymous false',
        `password_file ${passwords}`,
        'persistence false',
        'log_dest stderr',
        // Started as root (CI), mosquitto would switch to its own user, who cannot read our temp files.
        ...(process.getuid?.() === 0 ? ['user root'] : []),
      ].join('\n'),
    );
    const mosquitto = spawn('mosquitto', ['-c', conf]);
    children.push(mosquitto);
    let mosquittoLog = '';
    mosquitto.stderr.on('data', (chunk: Buffer) => (mosquittoLog += chunk.toString()));
    await until(() => mosquittoLog.includes(' running'), 10_000, 'mosquitto to start').catch(
      (error: Error) => {
        throw new Error(`${error.message}; mosquitto said:\n${mosquittoLog}`);
      },
    );

    const sub = spawn('mosquitto_sub', [
      '-h', '127.0.0.1', '-p', String(port), '--cafile', pki.ca, '-u', 'console', '-P', PEOPLE.console?.password ?? '',
      '-t', topics.alert(SITE, '+'), '-t', topics.status(SITE, '+'), '-q', '1', '-v', '-C', '4', '-W', '20',
    ]); // prettier-ignore
    children.push(sub);
    let lines = '';
    sub.stdout.on('data', (chunk: Buffer) => (lines += chunk.toString()));
    await until(
      () => mosquittoLog.includes('Sending CONNACK to') || mosquittoLog.includes('New client connected'),
      10_000,
      'mosquitto_sub to connect',
    );

    const uplink = await startUplink(await cameraConfig(port, await tempDir('outpost-camera-')));
    await until(() => uplink.connected(), 10_000, 'the uplink to connect to mosquitto');
    for (let i = 0; i < 3; i += 1) alert(uplink, i);
    await until(
      () => lines.trim().split('\n').length >= 4,
      10_000,
      'status and three alerts at mosquitto_sub',
    );
    const got = lines
      .trim()
      .split('\n')
      .map((line) => line.split(' ')[0]);
    expect(got).toEqual([
      topics.status(SITE, 'cam-a'),
      ...Array<string>(3).fill(topics.alert(SITE, 'cam-a')),
    ]);
  });
});
