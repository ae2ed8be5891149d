// Sites bridged to an operations centre, for the bridge tests and bench:sites: a centre directory made
// by outpost-provision (CA, password file, ACL), Debian's mosquitto running its config, a link proxy per
// site in front of it, and hub configs whose `bridge` points through that proxy.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { addCentreConsole, addSite, centrePaths, initCentre } from '../../provisioning/src/centre.js';
import { startCentreFromConf, LinkProxy, type Centre } from './centre.js';
import { testPki } from './pki.js';
import { freePort, tempDir, writeTemp } from './processes.js';

export interface CentreSetup {
  dir: string;
  centre: Centre;
  ca: string;
  opsPassword: string;
  /** Each site's kit: its bridge account and password (or client certificate). */
  kit(site: string): { dir: string; username: string; passwordFile: string; cert: string; key: string };
  /** An MQTT.js client of the central broker as the centre console account (reads every site). */
  ops(extra?: IClientOptions): Promise<MqttClient>;
  stop(): Promise<void>;
}

export async function centreWithSites(
  sites: Array<{ site: string; cert?: boolean }>,
  /** `consoleName`: the centre console account (default `ops`). */
  options: { extraConf?: string[]; ip?: string; consoleName?: string } = {},
): Promise<CentreSetup> {
  const consoleName = options.consoleName ?? 'ops';
  const dir = join(await tempDir('outpost-ops-'), 'centre');
  const [port, certPort] = [await freePort(), await freePort()];
  const ip = options.ip ?? '127.0.0.1';
  await initCentre(dir, { host: 'localhost', ip, listen: ip, port, certPort });
  for (const { site, cert } of sites) await addSite(dir, { site, cert: cert === true });
  const { password } = await addCentreConsole(dir, consoleName);
  const conf = await readFile(centrePaths(dir).mosquittoConf, 'utf8');
  const centre = await startCentreFromConf(
    [conf, 'max_queued_messages 1000000', 'max_inflight_messages 100', ...(options.extraConf ?? [])].join(
      '\n',
    ),
    port,
    certPort,
  );
  const ca = centrePaths(dir).caCert;
  const clients: MqttClient[] = [];
  return {
    dir,
    centre,
    ca,
    opsPassword: password ?? '',
    kit(site) {
      const kitDir = centrePaths(dir).kit(site);
      return {
        dir: kitDir,
        username: `site-${site}`,
        passwordFile: join(kitDir, 'bridge.password'),
        cert: join(kitDir, 'client.crt'),
        key: join(kitDir, 'client.key'),
      };
    },
    async ops(extra = {}) {
      const client = await connectAsync(`mqtts://${ip}:${port}`, {
        ca: [await readFile(ca)],
        username: consoleName,
        password: password ?? '',
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        clientId: `ops-${Math.random().toString(16).slice(2, 10)}`,
        ...extra,
      });
      client.on('error', () => undefined);
      clients.push(client);
      return client;
    },
    async stop() {
      await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
      await centre.stop();
    },
  };
}

export interface HubFiles {
  file: string;
  dataDir: string;
  tcpPort: number;
  mqttsPort: number;
  proxy: LinkProxy;
}

/**
 * A hub config (no camera: the bridge is what is measured) whose bridge dials the centre through its own
 * link proxy. `identities`: the hub's identities file text (boxes' accounts).
 */
export async function bridgedHub(
  setup: CentreSetup,
  options: {
    site: string;
    identities: string;
    cert?: boolean;
    bridge?: Record<string, unknown>;
    extra?: string[];
    metricsPort?: number;
  },
): Promise<HubFiles> {
  const pki = testPki();
  const dataDir = await tempDir('outpost-hub-');
  const identitiesFile = join(dataDir, 'identities.json');
  await writeFile(identitiesFile, options.identities, { mode: 0o600 });
  const [tcpPort, mqttsPort] = [await freePort(), await freePort()];
  const proxy = new LinkProxy({
    host: '127.0.0.1',
    port: options.cert ? (setup.centre.certPort ?? 0) : setup.centre.port,
  });
  await proxy.start();
  const bridge = { ...bridgeSection(setup, options.site, proxy.port, options.cert), ...options.bridge };
  const file = await writeTemp(
    'outpost.yaml',
    [
      `site: ${options.site}`,
      'device: hub',
      'role: hub',
      `dataDir: ${dataDir}`,
      'broker:',
      `  tcp: { port: ${tcpPort} }`,
      `  mqtts: { host: 127.0.0.1, port: ${mqttsPort} }`,
      `  tls: { ca: ${pki.ca}, cert: ${pki.serverCert}, key: ${pki.serverKey} }`,
      `  identitiesFile: ${identitiesFile}`,
      '  limits: { maxPublishRate: 100000, loginQueue: 1000 }',
      'telemetry: { intervalSeconds: 3600 }',
      'cameras: []',
      `bridge: ${JSON.stringify(bridge)}`,
      ...(options.extra ?? []),
    ].join('\n'),
  );
  return { file, dataDir, tcpPort, mqttsPort, proxy };
}

/** A hub's `bridge` section for `site`'s kit, dialling the centre at `port` (its proxy, or the broker). */
export function bridgeSection(
  setup: CentreSetup,
  site: string,
  port = setup.centre.port,
  cert = false,
): Record<string, unknown> {
  const kit = setup.kit(site);
  return {
    url: `mqtts://127.0.0.1:${port}`,
    // A link restored in a test is used within 2 s, not after a minute of backoff.
    reconnectMaxSeconds: 2,
    ca: setup.ca,
    ...(cert ? { cert: kit.cert, key: kit.key } : { username: kit.username, passwordFile: kit.passwordFile }),
  };
}

/** A box on the site: an MQTT.js client of the hub's TLS listener as `name`. */
export async function siteClient(
  hub: HubFiles,
  name: string,
  password: string,
  extra: IClientOptions = {},
): Promise<MqttClient> {
  const client = await connectAsync(`mqtts://127.0.0.1:${hub.mqttsPort}`, {
    ca: [await readFile(testPki().ca)],
    username: name,
    password,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    clientId: `${name}.${Math.random().toString(16).slice(2, 8)}`,
    ...extra,
  });
  client.on('error', () => undefined);
  return client;
}
