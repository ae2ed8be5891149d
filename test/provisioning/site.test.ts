// The site directory: CA and hub certificate that real TLS accepts, identities the broker accepts,
// idempotent commands that refuse to replace keys without `force`.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { describeError } from '../../daemon/src/errors.js';
import { parseIdentities, verifyPassword } from '../../daemon/src/mqtt/identities.js';
import { createSiteCa, issueCertificate } from '../../daemon/src/tls/pki.js';
import { addIdentity, initSite, readSite, revokeIdentity, sitePaths } from '../../provisioning/src/site.js';
import { tempDir } from '../support/processes.js';

/** The refusal a person sees: message and fix (describeError), matched together. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return describeError(error);
  }
  throw new Error('expected a refusal');
}

async function newSite(extra: { hubIp?: string } = { hubIp: '127.0.0.1' }) {
  const dir = join(await tempDir('outpost-site-'), 'site');
  const started = performance.now();
  await initSite(dir, { site: 'plant-7', hubHost: 'hub.plant.lan', ...extra });
  process.stdout.write(`site init: ${Math.round(performance.now() - started)} ms\n`);
  return dir;
}

/** A TLS handshake from a client trusting `caPem` to a server using the hub's certificate. */
async function handshake(dir: string, caPem: string, servername?: string): Promise<TLSSocket> {
  const paths = sitePaths(dir);
  const server = createServer(
    { cert: await readFile(paths.serverCert), key: await readFile(paths.serverKey) },
    (socket) => socket.end('hello'),
  );
  server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  try {
    // Without a servername the client checks the certificate against the IP it dialled.
    const socket = connect({ host: '127.0.0.1', port, ca: caPem, ...(servername ? { servername } : {}) });
    socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')));
    await once(socket, 'secureConnect');
    socket.destroy();
    return socket;
  } finally {
    server.close();
  }
}

describe('site init', () => {
  it('makes a CA and a hub certificate that verifies, names the hub IP and is back-dated a year', async () => {
    const dir = await newSite({ hubIp: '192.168.10.2' });
    const paths = sitePaths(dir);
    const ca = new X509Certificate(await readFile(paths.caCert));
    const server = new X509Certificate(await readFile(paths.serverCert));
    expect(ca.ca).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.subjectAltName).toContain('IP Address:192.168.10.2');
    expect(server.subjectAltName).toContain('DNS:hub.plant.lan');
    expect(server.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const backdated = Date.now() - new Date(server.validFrom).getTime();
    expect(backdated).toBeGreaterThan(364 * 86_400_000);
  });

  it('keeps secrets 0600 and writes a hub identity the broker accepts', async () => {
    const dir = await newSite();
    const paths = sitePaths(dir);
    for (const file of [
      paths.caKey,
      paths.serverKey,
      paths.settings,
      paths.identities,
      paths.password('hub'),
    ]) {
      expect(((await stat(file)).mode & 0o777).toString(8), file).toBe('600');
    }
    const identities = parseIdentities(await readFile(paths.identities, 'utf8'), paths.identities);
    expect(identities.identities.map((i) => [i.name, i.role])).toEqual([['hub', 'device']]);
    const password = (await readFile(paths.password('hub'), 'utf8')).trim();
    expect(await verifyPassword(password, identities.identities[0]!.password!)).toBe(true);
    const site = await readSite(dir);
    const key = Buffer.from(site.settings.devices.hub!.cameras[0]!.srtpKey, 'base64');
    expect(key.length).toBe(30);
  });

  it('OpenSSL agrees: the hub certificate is a valid TLS server certificate, a client one a client', async () => {
    const dir = await newSite();
    await addIdentity(dir, { name: 'ops1', kind: 'console', cert: true });
    const paths = sitePaths(dir);
    const check = (purpose: string, cert: string) =>
      spawnSync('openssl', ['verify', '-purpose', purpose, '-CAfile', paths.caCert, cert], {
        encoding: 'utf8',
      });
    expect(check('sslserver', paths.serverCert).stdout).toMatch(/: OK$/m);
    expect(check('sslclient', paths.clientCert('ops1')).stdout).toMatch(/: OK$/m);
    expect(check('sslserver', paths.clientCert('ops1')).status).not.toBe(0);
  });

  it('a TLS client trusting the site CA completes a handshake with the hub certificate', async () => {
    const dir = await newSite();
    const socket = await handshake(dir, await readFile(sitePaths(dir).caCert, 'utf8'), 'hub.plant.lan');
    expect(socket.authorized).toBe(true);
    const byIp = await handshake(dir, await readFile(sitePaths(dir).caCert, 'utf8'));
    expect(byIp.authorized).toBe(true);
    expect(
      await refusal(handshake(dir, await readFile(sitePaths(dir).caCert, 'utf8'), 'other.plant.lan')),
    ).toMatch(/altnames/);
  });

  it('a TLS client trusting another CA refuses the hub certificate', async () => {
    const dir = await newSite();
    const other = await createSiteCa('other');
    expect(await refusal(handshake(dir, other.certPem, 'hub.plant.lan'))).toMatch(/certificate/);
  });

  it('is idempotent, never replaces the CA, and re-issues the hub certificate only with force', async () => {
    const dir = await newSite();
    const paths = sitePaths(dir);
    const caBefore = await readFile(paths.caKey, 'utf8');
    const again = await initSite(dir, { site: 'plant-7', hubHost: 'hub.plant.lan', hubIp: '127.0.0.1' });
    expect(again.changed).toEqual([]);
    expect(
      await refusal(initSite(dir, { site: 'plant-7', hubHost: 'hub.plant.lan', hubIp: '10.0.0.9' })),
    ).toMatch(/--force/);
    expect(await refusal(initSite(dir, { site: 'plant-8' }))).toMatch(/already holds site "plant-7"/);
    const forced = await initSite(dir, {
      site: 'plant-7',
      hubHost: 'hub.plant.lan',
      hubIp: '10.0.0.9',
      force: true,
    });
    expect(forced.changed).toContain('hub/server.crt');
    expect(await readFile(paths.caKey, 'utf8')).toBe(caBefore);
    expect(new X509Certificate(await readFile(paths.serverCert)).subjectAltName).toContain('10.0.0.9');
  });

  it('refuses bad input naming the problem and the fix', async () => {
    const dir = join(await tempDir(), 'site');
    expect(await refusal(initSite(dir, { site: 'Plant 7' }))).toMatch(/site "Plant 7" is not a valid name/);
    expect(await refusal(initSite(dir, { site: 'p', hubIp: '300.1.1.1' }))).toMatch(/not an IP address/);
    expect(await refusal(initSite(dir, { site: 'p', hubHost: '10.0.0.1' }))).toMatch(/--hub-ip/);
    expect(await refusal(readSite(dir))).toMatch(/not a site directory.*site init/);
  });
});

describe('identities', () => {
  it('a console password is returned once, stored only hashed, and verifies', async () => {
    const dir = await newSite();
    const result = await addIdentity(dir, { name: 'ops1', kind: 'console', cert: true });
    expect(result.created).toBe(true);
    const text = await readFile(sitePaths(dir).identities, 'utf8');
    expect(text).not.toContain(result.password!);
    const record = parseIdentities(text, 'identities.json').identities.find((i) => i.name === 'ops1')!;
    expect(record).toMatchObject({ role: 'console', certificate: true });
    expect(await verifyPassword(result.password!, record.password!)).toBe(true);
    const cert = new X509Certificate(await readFile(sitePaths(dir).clientCert('ops1')));
    expect(cert.subject).toContain('CN=ops1');
    expect(cert.verify(new X509Certificate(await readFile(sitePaths(dir).caCert)).publicKey)).toBe(true);
  });

  it('adding the same device twice is a no-op; a different one needs force', async () => {
    const dir = await newSite();
    const first = await addIdentity(dir, { name: 'cam-north', kind: 'camera', cameras: ['cam0', 'cam1'] });
    expect(first.created).toBe(true);
    const settings = await readFile(sitePaths(dir).settings, 'utf8');
    expect(
      (await addIdentity(dir, { name: 'cam-north', kind: 'camera', cameras: ['cam0', 'cam1'] })).created,
    ).toBe(false);
    expect(await readFile(sitePaths(dir).settings, 'utf8')).toBe(settings);
    expect(await refusal(addIdentity(dir, { name: 'cam-north', kind: 'camera', cameras: ['cam0'] }))).toMatch(
      /already exists.*--force/,
    );
    expect(await refusal(addIdentity(dir, { name: 'hub2', kind: 'hub' }))).toMatch(/already has hub "hub"/);
    const site = await readSite(dir);
    const ports = Object.values(site.settings.devices).flatMap((d) => d.cameras.map((c) => c.rtpPort));
    expect(new Set(ports).size).toBe(ports.length);
  });

  it('revoking removes the identity and its credentials', async () => {
    const dir = await newSite();
    await addIdentity(dir, { name: 'cam-north', kind: 'camera' });
    expect(await revokeIdentity(dir, 'cam-north')).toEqual({ removed: true });
    const site = await readSite(dir);
    expect(site.identities.identities.map((i) => i.name)).toEqual(['hub']);
    expect(site.settings.devices['cam-north']).toBeUndefined();
    expect(await refusal(stat(sitePaths(dir).password('cam-north')))).toMatch(/ENOENT/);
    expect(await revokeIdentity(dir, 'cam-north')).toEqual({ removed: false });
    expect(await refusal(revokeIdentity(dir, 'hub'))).toMatch(/hub and cannot be revoked/);
  });

  it('a client certificate from the site CA is a valid certificate for issueCertificate callers too', async () => {
    const ca = await createSiteCa('x');
    const leaf = await issueCertificate(ca, { commonName: 'a', site: 'x', kind: 'client' });
    expect(new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(ca.certPem))).toBe(true);
  });
});
