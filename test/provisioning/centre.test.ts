// `outpost-provision centre`: what the operations centre's Mosquitto needs, written offline, then run
// by Debian's real mosquitto: each site's bridge publishes only under its own site prefix, reads only
// what crosses down to it; a centre console reads every site and sends commands; password and client
// certificate logins; the site imports its kit and its hub's bundle carries the bridge.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBundle, INSTALLED } from '../../provisioning/src/bundle.js';
import { makeBundle } from '../../provisioning/src/bundle.js';
import { centrePaths, mosquittoPasswordLine } from '../../provisioning/src/centre.js';
import { readSite } from '../../provisioning/src/site.js';
import { startCentreFromConf, type Centre } from '../support/centre.js';
import { freePort, REPO, tempDir, until } from '../support/processes.js';
import { provisionedSite } from '../support/provisioning.js';

const CLI = join(REPO, 'dist/provisioning/src/cli.js');

function provision(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

let dir = '';
let centre: Centre | undefined;
let port = 0;
let certPort = 0;
let opsPassword = '';
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = join(await tempDir('outpost-centre-dir-'), 'ops');
  [port, certPort] = [await freePort(), await freePort()];
  const init = provision(
    'centre', 'init', dir, '--host', 'localhost', '--ip', '127.0.0.1', '--listen', '127.0.0.1',
    '--port', String(port), '--cert-port', String(certPort),
  ); // prettier-ignore
  expect(init.code, init.stderr).toBe(0);
  for (const args of [['plant-7'], ['plant-8'], ['plant-9', '--cert']]) {
    const added = provision('centre', 'add-site', ...args, '-c', dir);
    expect(added.code, added.stderr).toBe(0);
  }
  const passwordFile = join(dir, 'ops.password');
  const made = provision('centre', 'console', 'add', 'ops', '--password-file', passwordFile, '-c', dir);
  expect(made.code, made.stderr).toBe(0);
  opsPassword = (await readFile(passwordFile, 'utf8')).trim();
  centre = await startCentreFromConf(await readFile(centrePaths(dir).mosquittoConf, 'utf8'), port, certPort);
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
  await centre?.stop();
});

async function login(
  user: string,
  options: { password?: string; clientCert?: { cert: string; key: string } } & IClientOptions,
): Promise<MqttClient> {
  const { password, clientCert: cert, ...extra } = options;
  const client = await connectAsync(`mqtts://127.0.0.1:${cert ? certPort : port}`, {
    ca: [await readFile(centrePaths(dir).caCert)],
    servername: 'localhost',
    ...(cert
      ? { cert: await readFile(cert.cert), key: await readFile(cert.key) }
      : { username: user, password }),
    reconnectPeriod: 0,
    connectTimeout: 5000,
    clientId: `${user}-${Math.random().toString(16).slice(2, 8)}`,
    ...extra,
  });
  clients.push(client);
  return client;
}

const kitPassword = async (site: string) =>
  (await readFile(join(centrePaths(dir).kit(site), 'bridge.password'), 'utf8')).trim();

describe('outpost-provision centre, with Debian mosquitto as the central broker', () => {
  it("a site's bridge publishes under its own site prefix only; the centre console sees it", async () => {
    const ops = await login('ops', { password: opsPassword });
    const seen: string[] = [];
    ops.on('message', (topic) => seen.push(topic));
    await ops.subscribeAsync('outpost/v1/#', { qos: 1 });
    const bridge = await login('site-plant-7', { password: await kitPassword('plant-7') });
    await bridge.publishAsync('outpost/v1/plant-7/hub/alert', '{}', { qos: 1 });
    // Mosquitto 2 acknowledges a publish it refuses (3.1.1 has no negative PUBACK) and drops it.
    await bridge.publishAsync('outpost/v1/plant-8/hub/alert', '{}', { qos: 1 });
    await bridge.publishAsync('outpost/v1/plant-70/hub/alert', '{}', { qos: 1 });
    await bridge.publishAsync('elsewhere/x', '{}', { qos: 1 });
    await bridge.publishAsync('outpost/v1/plant-7/hub/status', '{}', { qos: 1 });
    await until(() => seen.includes('outpost/v1/plant-7/hub/status'), 5000, 'the second own message');
    expect(seen).toEqual(['outpost/v1/plant-7/hub/alert', 'outpost/v1/plant-7/hub/status']);
  });

  it("a site's bridge reads only its own site's cmd and chat; the console sends them", async () => {
    const ops = await login('ops', { password: opsPassword });
    const bridge = await login('site-plant-7', { password: await kitPassword('plant-7') });
    const got: string[] = [];
    bridge.on('message', (topic) => got.push(topic));
    const granted = await bridge.subscribeAsync(
      ['outpost/v1/plant-7/+/cmd/#', 'outpost/v1/plant-7/chat/+', 'outpost/v1/plant-8/#', 'outpost/v1/#'],
      { qos: 1 },
    );
    // Mosquitto 2 grants a subscription the ACL refuses but delivers nothing through it.
    expect(granted).toHaveLength(4);
    for (const topic of [
      'outpost/v1/plant-7/cam-a/cmd/ping',
      'outpost/v1/plant-8/cam-a/cmd/ping',
      'outpost/v1/plant-7/chat/ops',
      'outpost/v1/plant-7/cam-a/alert', // the console may not write this
      'outpost/v1/plant-7/chat/last',
    ])
      await ops.publishAsync(topic, '{"id":"1","args":{}}', { qos: 1 });
    await until(() => got.includes('outpost/v1/plant-7/chat/last'), 5000, 'the last chat');
    expect([...new Set(got)]).toEqual([
      'outpost/v1/plant-7/cam-a/cmd/ping',
      'outpost/v1/plant-7/chat/ops',
      'outpost/v1/plant-7/chat/last',
    ]);
  });

  it('a wrong password and a password of another site are refused', async () => {
    await expect(login('site-plant-7', { password: 'wrong' })).rejects.toThrow(/Not authorized|Bad User/i);
    await expect(login('site-plant-7', { password: await kitPassword('plant-8') })).rejects.toThrow(
      /Not authorized|Bad User/i,
    );
  });

  it('a client certificate from the centre CA logs a site in as its CN, with the same ACL', async () => {
    const kit = centrePaths(dir).kit('plant-9');
    const ops = await login('ops', { password: opsPassword });
    const seen: string[] = [];
    ops.on('message', (topic) => seen.push(topic));
    await ops.subscribeAsync('outpost/v1/#', { qos: 1 });
    const bridge = await login('site-plant-9', {
      clientCert: { cert: join(kit, 'client.crt'), key: join(kit, 'client.key') },
    });
    await bridge.publishAsync('outpost/v1/plant-7/hub/alert', '{}', { qos: 1 });
    await bridge.publishAsync('outpost/v1/plant-9/hub/alert', '{}', { qos: 1 });
    await until(() => seen.length > 0, 5000, 'the own message');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen).toEqual(['outpost/v1/plant-9/hub/alert']);
  });

  it('writes the EMQX rules and a password line in mosquitto_passwd’s own format', async () => {
    const emqx = await readFile(centrePaths(dir).emqxAcl, 'utf8');
    expect(emqx).toContain('{allow, {username, "site-plant-7"}, publish, ["outpost/v1/plant-7/#"]}.');
    expect(emqx.trim().endsWith('{deny, all}.')).toBe(true);
    expect(mosquittoPasswordLine('u', 'p')).toMatch(/^u:\$7\$\d+\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}$/);
  });

  it("the site imports its kit; the hub's bundle carries the bridge and the daemon accepts its config", async () => {
    const site = await provisionedSite('plant-7');
    const kit = centrePaths(dir).kit('plant-7');
    const set = provision('bridge', 'set', kit, '-d', site.dir);
    expect(set.code, set.stderr).toBe(0);
    expect(provision('bridge', 'set', kit, '-d', site.dir).stdout).toMatch(/nothing changed/);
    const other = provision('bridge', 'set', centrePaths(dir).kit('plant-8'), '-d', site.dir);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/kit is for site plant-8/);
    const { ca } = await readSite(site.dir);
    const opened = openBundle(await makeBundle(site.dir, 'hub'), 'hub bundle', { caPem: ca.certPem });
    expect(opened.config.bridge).toMatchObject({
      url: `mqtts://127.0.0.1:${port}`,
      ca: INSTALLED.bridgeCa,
      username: 'site-plant-7',
      passwordFile: INSTALLED.bridgePassword,
    });
    const password = opened.files.find((file) => file.path === INSTALLED.bridgePassword);
    expect(password?.mode).toBe(0o600);
    expect(password?.content.toString().trim()).toBe(await kitPassword('plant-7'));
    const camera = openBundle(await makeBundle(site.dir, 'cam-north'), 'camera bundle', {
      caPem: ca.certPem,
    });
    expect(camera.config.bridge).toBeUndefined();
  });
});
