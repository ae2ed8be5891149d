// Provisioning against a running hub: identities and certificates made by outpost-provision work with
// the daemon's broker over TLS, and a revoked device is cut off by the hub's SIGHUP reload.
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { addIdentity, initSite, revokeIdentity, sitePaths } from '../../provisioning/src/site.js';
import { freePort, runCli, tempDir, until, writeTemp, type Run } from '../support/processes.js';

let daemon: Run | undefined;
const clients: MqttClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
  daemon?.child.kill('SIGKILL');
  await daemon?.exited();
  daemon = undefined;
});

describe('provisioning with a running hub', () => {
  it('a device provisioned by outpost-provision connects over TLS; after revoke and SIGHUP it is refused', async () => {
    const dir = join(await tempDir('outpost-site-'), 'plant');
    await initSite(dir, { site: 'plant', hubHost: 'localhost', hubIp: '127.0.0.1' });
    const added = await addIdentity(dir, { name: 'cam-a', kind: 'camera', cameras: ['cam0'] });
    const bystander = await addIdentity(dir, { name: 'cam-b', kind: 'camera', cameras: ['cam0'] });
    const paths = sitePaths(dir);

    // The hub as first boot installs it: its identities file is a copy of the site's.
    const dataDir = await tempDir('outpost-hub-');
    const identitiesFile = join(dataDir, 'identities.json');
    await copyFile(paths.identities, identitiesFile);
    const port = await freePort();
    const config = await writeTemp(
      'outpost.yaml',
      [
        'site: plant',
        'device: hub',
        `dataDir: ${dataDir}`,
        `broker:\n  tcp:\n    port: ${await freePort()}\n  mqtts:\n    host: 127.0.0.1\n    port: ${port}`,
        `  tls:\n    ca: ${paths.caCert}\n    cert: ${paths.serverCert}\n    key: ${paths.serverKey}`,
        `  identitiesFile: ${identitiesFile}`,
        'cameras: []',
      ].join('\n'),
    );
    daemon = runCli(['run', '--config', config]);
    await daemon.waitForLog((line) => line.msg === 'outpost running');

    const ca = await readFile(paths.caCert);
    const connect = (name: string, password: string | undefined) =>
      connectAsync(`mqtts://localhost:${port}`, {
        ca: [ca],
        username: name,
        password,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
    const camA = await connect('cam-a', added.password);
    const camB = await connect('cam-b', bystander.password);
    clients.push(camA, camB);
    const cut = new Promise<void>((resolve) => camA.once('close', () => resolve()));

    expect((await revokeIdentity(dir, 'cam-a')).removed).toBe(true);
    await copyFile(paths.identities, identitiesFile);
    daemon.child.kill('SIGHUP');
    await cut;
    await expect(connect('cam-a', added.password)).rejects.toThrow(/Not authorized/i);
    await until(() => camB.connected, 1000, 'the other device to stay connected');
    await daemon.waitForLog((line) => line.msg === 'mqtt identities loaded' && line.identities === 2);
  });
});
