// Starts the embedded broker the way a provisioned hub runs it: loopback TCP, TLS and WSS listeners
// with the test PKI, an identities file with hashed passwords, and its store in a temp data dir.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { IConnectPacket } from 'mqtt-packet';
import pino, { type Logger } from 'pino';
import type { PullOptions } from '../../daemon/src/clips/pull.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { Broker } from '../../daemon/src/mqtt/broker.js';
import { hashPassword, type Role } from '../../daemon/src/mqtt/identities.js';
import { testPki } from './pki.js';
import { freePort, tempDir } from './processes.js';

export const SITE = 'plant';
/** The test site's topic prefix: docs/topics.md's P. */
export const P = `outpost/v1/${SITE}`;

/** Test identities: name → role and password (certificate-enabled where noted). */
export const PEOPLE: Record<string, { role: Role; password?: string; certificate?: boolean }> = {
  'cam-a': { role: 'device', password: 'pw-cam-a' },
  'cam-b': { role: 'device', password: 'pw-cam-b' },
  console: { role: 'console', password: 'pw-console', certificate: true },
  alice: { role: 'staff', password: 'pw-alice' },
  root: { role: 'admin', password: 'pw-root' },
};

export interface TestBroker {
  broker: Broker;
  dataDir: string;
  identitiesFile: string;
  tcpPort: number;
  mqttsPort: number;
  wssPort: number;
  /** Restart on the same ports and data dir (what a daemon restart does). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** Write the identities file from `people` (then call broker.reloadIdentities()). */
  writeIdentities(people: typeof PEOPLE): Promise<void>;
}

export async function identitiesJson(people: typeof PEOPLE, site = SITE): Promise<string> {
  const identities = await Promise.all(
    Object.entries(people).map(async ([name, person]) => ({
      name,
      role: person.role,
      ...(person.password ? { password: await hashPassword(person.password) } : {}),
      certificate: person.certificate ?? false,
    })),
  );
  return JSON.stringify({ version: 1, site, identities }, null, 2);
}

/** A logger that keeps every line as an object (for tests that check what the broker logs). */
export function recordingLogger(level = 'info'): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level },
    { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { log, lines };
}

/** A new data dir for a hub daemon that a test runs, holding the test identities (PEOPLE). */
export async function hubDataDir(
  prefix = 'outpost-data-',
): Promise<{ dataDir: string; identitiesFile: string }> {
  const dataDir = await tempDir(prefix);
  const identitiesFile = join(dataDir, 'identities.json');
  await writeFile(identitiesFile, await identitiesJson(PEOPLE), { mode: 0o600 });
  return { dataDir, identitiesFile };
}

export async function startTestBroker(
  options: {
    limits?: Record<string, number>;
    dataDir?: string;
    broker?: Record<string, unknown>;
    log?: Logger;
  } = {},
): Promise<TestBroker> {
  const pki = testPki();
  const dataDir = options.dataDir ?? (await tempDir('outpost-broker-'));
  const identitiesFile = join(dataDir, 'identities.json');
  const writeIdentities = async (people: typeof PEOPLE) =>
    writeFile(identitiesFile, await identitiesJson(people), { mode: 0o600 });
  await writeIdentities(PEOPLE);
  const [tcpPort, mqttsPort, wssPort] = [await freePort(), await freePort(), await freePort()];
  const config = configSchema.parse({
    site: SITE,
    device: 'hub',
    dataDir,
    broker: {
      tcp: { port: tcpPort },
      mqtts: { host: '127.0.0.1', port: mqttsPort },
      wss: { host: '127.0.0.1', port: wssPort },
      tls: { ca: pki.ca, cert: pki.serverCert, key: pki.serverKey },
      identitiesFile,
      limits: options.limits ?? {},
      ...options.broker,
    },
  });
  const log = options.log ?? pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
  const handle: TestBroker = {
    broker: new Broker(config, log),
    dataDir,
    identitiesFile,
    tcpPort,
    mqttsPort,
    wssPort,
    async restart() {
      await handle.broker.stop();
      handle.broker = new Broker(config, log);
      await handle.broker.start();
    },
    stop: () => handle.broker.stop(),
    writeIdentities,
  };
  await handle.broker.start();
  return handle;
}

type OnMessage = (topic: string, payload: Buffer) => void;

/**
 * An MQTT.js client, connected, whose `onMessage` listens from before the CONNECT. A listener added
 * after `await connectAsync(...)` misses what a persistent session's queue delivers right behind the
 * CONNACK: MQTT.js handles the packets of one read in process.nextTick steps, all before the await
 * resumes, and acknowledges them.
 */
export function connectListening(
  url: string,
  options: IClientOptions,
  onMessage?: OnMessage,
): Promise<MqttClient> {
  const client = connect(url, options);
  if (onMessage) client.on('message', onMessage);
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => {
      client.end(true);
      reject(error);
    };
    client.once('connect', () => {
      client.off('error', fail);
      client.off('close', closed);
      resolve(client);
    });
    const closed = () => fail(new Error(`connection to ${url} closed before CONNACK`));
    client.once('error', fail);
    client.once('close', closed);
  });
}

/** An MQTT.js client over TLS to the test broker, as `name` with its password. */
export function connectAs(
  broker: TestBroker,
  name: string,
  extra: IClientOptions = {},
  transport: 'mqtts' | 'wss' = 'mqtts',
  onMessage?: OnMessage,
): Promise<MqttClient> {
  const pki = testPki();
  const url =
    transport === 'mqtts' ? `mqtts://127.0.0.1:${broker.mqttsPort}` : `wss://127.0.0.1:${broker.wssPort}`;
  const options: IClientOptions = {
    ca: [readPem(pki.ca)],
    username: name,
    password: PEOPLE[name]?.password,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    clientId: `${name}.${Math.random().toString(16).slice(2, 10)}`,
    ...extra,
  };
  return connectListening(url, options, onMessage);
}

/** `outpost clips pull` as the console, over TLS to the test broker, writing clips under `out`. */
export function pullOptions(broker: TestBroker, out: string, extra: Partial<PullOptions> = {}): PullOptions {
  return {
    url: `mqtts://127.0.0.1:${broker.mqttsPort}`,
    username: 'console',
    password: PEOPLE.console?.password ?? '',
    ca: readPem(testPki().ca),
    site: SITE,
    out,
    clientId: 'console.clips',
    ...extra,
  };
}

const pemCache = new Map<string, Buffer>();
/** A CONNECT (MQTT 3.1.1, clean session, keep-alive 30 s) for tests that speak packets by hand; the password is `username`'s in PEOPLE unless given. */
export function connectPacket(clientId: string, username: string, password?: string): IConnectPacket {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive: 30,
    username,
    password: Buffer.from(password ?? PEOPLE[username]?.password ?? ''),
  };
}

export function readPem(file: string): Buffer {
  let pem = pemCache.get(file);
  if (!pem) {
    pem = readFileSync(file);
    pemCache.set(file, pem);
  }
  return pem;
}

/** Run a command to completion with a bound; stdout and stderr collected. */
export function run(
  command: string,
  args: string[],
  ms = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** mosquitto_pub/_sub arguments for the TLS listener as `name`. */
export function mosquittoTls(
  broker: TestBroker,
  name: string,
  password = PEOPLE[name]?.password ?? '',
): string[] {
  return [
    '-h',
    '127.0.0.1',
    '-p',
    String(broker.mqttsPort),
    '--cafile',
    testPki().ca,
    '-u',
    name,
    '-P',
    password,
  ];
}
