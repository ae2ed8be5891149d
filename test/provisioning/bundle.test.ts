// Bundles: what they carry passes the daemon's own parsers, and anything changed, foreign or cut short
// is refused with a message that says so.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { OutpostError } from '../../daemon/src/errors.js';
import { parseConfig } from '../../daemon/src/config/load.js';
import { parseIdentities, verifyPassword } from '../../daemon/src/mqtt/identities.js';
import { INSTALLED, makeBundle, openBundle, type BundleEnvelope } from '../../provisioning/src/bundle.js';
import { fingerprint } from '../../daemon/src/tls/pki.js';
import { addIdentity, initSite, sitePaths } from '../../provisioning/src/site.js';
import { join } from 'node:path';
import { tempDir } from '../support/processes.js';
import { flipOneByte, provisionedSite, refusal, resign as resignBundle } from '../support/provisioning.js';

const fileText = (opened: ReturnType<typeof openBundle>, path: string): string =>
  opened.files.find((f) => f.path === path)!.content.toString('utf8');

describe('bundles', () => {
  it('the hub bundle carries a config, identities and TLS files the daemon accepts', async () => {
    const site = await provisionedSite();
    const ca = await readFile(sitePaths(site.dir).caCert, 'utf8');
    process.stdout.write(
      `hub bundle: ${site.hubBundle.length} bytes; camera bundle: ${site.cameraBundle.length} bytes\n`,
    );
    const hub = openBundle(site.hubBundle, 'hub.json', { caPem: ca });
    expect(hub.files.map((f) => [f.path, f.mode.toString(8)]).sort()).toEqual(
      [
        [INSTALLED.identities, '600'],
        [INSTALLED.config, '640'],
        [INSTALLED.ca, '640'],
        [INSTALLED.serverCert, '640'],
        [INSTALLED.serverKey, '600'],
        [INSTALLED.password, '600'],
      ].sort(),
    );
    const config = parseConfig(fileText(hub, INSTALLED.config), 'outpost.yaml');
    expect(config).toMatchObject({
      site: 'plant-7',
      device: 'hub',
      role: 'hub',
      dataDir: '/var/lib/outpost',
      broker: {
        tls: { ca: INSTALLED.ca, cert: INSTALLED.serverCert, key: INSTALLED.serverKey },
        mqtts: { host: '0.0.0.0', port: 8883 },
        wss: { port: 8884 },
        identitiesFile: INSTALLED.identities,
      },
      uplink: { url: 'mqtt://127.0.0.1:1883', username: 'hub', passwordFile: INSTALLED.password },
      sfu: { host: '192.168.10.2' },
    });
    const identities = parseIdentities(fileText(hub, INSTALLED.identities), 'identities.json');
    const own = identities.identities.find((i) => i.name === 'hub')!;
    expect(await verifyPassword(fileText(hub, INSTALLED.password).trim(), own.password!)).toBe(true);
    expect(identities.identities.map((i) => i.name).sort()).toEqual(['cam-north', 'hub']);
    const server = new X509Certificate(fileText(hub, INSTALLED.serverCert));
    expect(server.verify(new X509Certificate(ca).publicKey)).toBe(true);
  });

  it('the camera bundle points its uplink at the hub over TLS with the site CA and its client certificate', async () => {
    const site = await provisionedSite();
    const camera = openBundle(site.cameraBundle, 'cam.json', {
      fingerprint: fingerprint(await readFile(sitePaths(site.dir).caCert, 'utf8')),
    });
    const config = parseConfig(fileText(camera, INSTALLED.config), 'outpost.yaml');
    expect(config.role).toBe('camera');
    expect(config.uplink).toEqual({
      url: 'mqtts://192.168.10.2:8883',
      ca: INSTALLED.ca,
      username: 'cam-north',
      passwordFile: INSTALLED.password,
      cert: INSTALLED.clientCert,
      key: INSTALLED.clientKey,
    });
    expect(config.broker.mqtts).toBeUndefined();
    expect(config.cameras.map((c) => [c.name, c.rtp.port])).toEqual([
      ['cam0', 5006],
      ['cam1', 5008],
    ]);
    expect(camera.files.map((f) => f.path)).toContain(INSTALLED.clientKey);
    expect(camera.files.map((f) => f.path)).not.toContain(INSTALLED.serverKey);
    expect(new X509Certificate(fileText(camera, INSTALLED.clientCert)).subject).toContain('CN=cam-north');
  });

  it('a bundle with one byte of a file flipped is refused: signature does not match', async () => {
    const site = await provisionedSite();
    const ca = await readFile(sitePaths(site.dir).caCert, 'utf8');
    const message = await refusal(() =>
      openBundle(flipOneByte(site.cameraBundle), 'cam.json', { caPem: ca }),
    );
    expect(message).toMatch(/signature does not match its content.*never edit a bundle/);
    const error = (() => {
      try {
        openBundle(flipOneByte(site.hubBundle, INSTALLED.identities), 'hub.json', { caPem: ca });
      } catch (e) {
        return e as OutpostError;
      }
    })();
    expect(error?.code).toBe('BUNDLE_SIGNATURE_INVALID');
  });

  it('a bundle from another site CA is refused, by certificate or by fingerprint', async () => {
    const [ours, theirs] = await Promise.all([provisionedSite(), provisionedSite('plant-7')]);
    const ca = await readFile(sitePaths(ours.dir).caCert, 'utf8');
    expect(await refusal(() => openBundle(theirs.cameraBundle, 'cam.json', { caPem: ca }))).toMatch(
      /made by another site CA \(fingerprint [0-9a-f]{64}\), not the trusted one/,
    );
    const colons = fingerprint(ca).toUpperCase().match(/../g)!.join(':');
    expect(openBundle(ours.cameraBundle, 'cam.json', { fingerprint: colons }).envelope.device).toBe(
      'cam-north',
    );
    expect(await refusal(() => openBundle(theirs.cameraBundle, 'cam.json', { fingerprint: colons }))).toMatch(
      /CA fingerprint .* is not the expected/,
    );
  });

  it('a bundle re-signed by a foreign CA in place of ours is refused even though it is self-consistent', async () => {
    const [ours, theirs] = await Promise.all([provisionedSite(), provisionedSite()]);
    const ca = await readFile(sitePaths(ours.dir).caCert, 'utf8');
    const forged = JSON.parse(theirs.cameraBundle) as Record<string, unknown>;
    forged.caCertificate = ca; // claims our CA, carries their signature
    expect(await refusal(() => openBundle(JSON.stringify(forged), 'cam.json', { caPem: ca }))).toMatch(
      /signature does not match/,
    );
  });

  it('a truncated bundle is refused as incomplete', async () => {
    const site = await provisionedSite();
    const ca = await readFile(sitePaths(site.dir).caCert, 'utf8');
    const cut = site.cameraBundle.slice(0, Math.floor(site.cameraBundle.length / 2));
    expect(await refusal(() => openBundle(cut, 'cam.json', { caPem: ca }))).toMatch(
      /not a complete bundle.*truncated/,
    );
    expect(await refusal(() => openBundle('{"format":"zip"}', 'x.json', { caPem: ca }))).toMatch(
      /not a valid bundle: format: not an Outpost bundle/,
    );
  });

  it('names an unknown device and how to add it', async () => {
    const site = await provisionedSite();
    expect(await refusal(makeBundle(site.dir, 'cam-south'))).toMatch(
      /no device "cam-south".*device add cam-south.*devices: hub, cam-north/,
    );
  });

  it('an IPv6 hub address is bracketed in the camera uplink URL', async () => {
    const dir = join(await tempDir('outpost-site-'), 'v6');
    await initSite(dir, { site: 'plant-7', hubIp: 'fd00::2' });
    await addIdentity(dir, { name: 'cam-a', kind: 'camera' });
    const opened = openBundle(await makeBundle(dir, 'cam-a'), 'cam.json', { firstUse: true });
    const config = parseConfig(fileText(opened, INSTALLED.config), 'outpost.yaml');
    expect(config.uplink?.url).toBe('mqtts://[fd00::2]:8883');
  });

  it('a bundle signed by the site CA is still refused when the daemon would refuse its content', async () => {
    const site = await provisionedSite();
    const ca = await readFile(sitePaths(site.dir).caCert, 'utf8');
    const caKey = await readFile(sitePaths(site.dir).caKey, 'utf8');
    const resign = (change: (envelope: BundleEnvelope) => void) =>
      resignBundle(site.cameraBundle, caKey, change);
    const badConfig = resign((envelope) => {
      const file = envelope.files.find((f) => f.path === INSTALLED.config)!;
      file.base64 = Buffer.from('site: plant-7\ndevice: cam-north\nrole: camera\n').toString('base64');
    });
    expect(await refusal(() => openBundle(badConfig, 'cam.json', { caPem: ca }))).toMatch(
      /uplink: role camera needs uplink/,
    );
    const shadow = resign((envelope) => {
      envelope.files.push({
        path: '/etc/shadow',
        mode: '0600',
        base64: Buffer.from('root::0:0').toString('base64'),
      });
    });
    expect(await refusal(() => openBundle(shadow, 'cam.json', { caPem: ca }))).toMatch(
      /file \/etc\/shadow \(0600\) is not allowed/,
    );
    const otherDevice = resign((envelope) => {
      envelope.device = 'cam-south';
    });
    expect(await refusal(() => openBundle(otherDevice, 'cam.json', { caPem: ca }))).toMatch(
      /its config is for cam-north \(camera\) on plant-7, the bundle for cam-south/,
    );
  });
});
