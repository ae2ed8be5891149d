// `outpost-provision console trust`: what a tech installs on a console machine or phone so its browser
// trusts the site console. The files must be the site CA itself, in forms other tools read: openssl
// for the PEM and DER, Python's plistlib for the Apple profile.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/processes.js';
import { provision } from '../support/provisioning.js';

describe('outpost-provision console trust', () => {
  it('writes the site CA as PEM, DER and an Apple profile, with its fingerprint and the console URL', async () => {
    const work = await tempDir('outpost-trust-');
    const site = join(work, 'site');
    const hub = ['--hub-host=hub.plant.lan', '--hub-ip=10.1.0.2'];
    const init = provision('site', 'init', site, '--site=plant-7', ...hub);
    expect(init.code, init.stderr).toBe(0);
    const out = join(work, 'kit');
    const trust = provision('console', 'trust', '--out', out, '-d', site);
    expect(trust.code, trust.stderr).toBe(0);
    expect(trust.stdout).toContain('console: https://hub.plant.lan:8443/');

    const ca = await readFile(join(site, 'ca', 'ca.crt'), 'utf8');
    expect(await readFile(join(out, 'site-ca.crt'), 'utf8')).toBe(ca);
    const fingerprint = new X509Certificate(ca).fingerprint256;
    expect(trust.stdout).toContain(fingerprint);

    // DER, read by openssl as DER.
    const der = spawnSync(
      'openssl',
      ['x509', '-inform', 'DER', '-in', join(out, 'site-ca.cer'), '-noout', '-fingerprint', '-sha256'],
      { encoding: 'utf8' },
    );
    expect(der.status, der.stderr).toBe(0);
    expect(der.stdout.toUpperCase()).toContain(fingerprint);

    // The Apple profile: a plist whose root-certificate payload is the CA's DER.
    const plist = spawnSync(
      'python3',
      [
        '-c',
        'import plistlib,sys,base64; p=plistlib.load(open(sys.argv[1],"rb")); c=p["PayloadContent"][0]; print(c["PayloadType"]); sys.stdout.write(base64.b64encode(c["PayloadContent"]).decode())',
        join(out, 'site-ca.mobileconfig'),
      ],
      { encoding: 'utf8' },
    );
    expect(plist.status, plist.stderr).toBe(0);
    const [type, body] = plist.stdout.split('\n');
    expect(type).toBe('com.apple.security.root');
    expect(new X509Certificate(Buffer.from(body ?? '', 'base64')).fingerprint256).toBe(fingerprint);

    const readme = await readFile(join(out, 'README.txt'), 'utf8');
    expect(readme).toContain(fingerprint);
    expect(readme).toContain('https://10.1.0.2:8443/');
    // No key of any kind in the kit.
    for (const file of ['site-ca.crt', 'site-ca.mobileconfig', 'README.txt']) {
      expect(await readFile(join(out, file), 'utf8')).not.toContain('PRIVATE KEY');
    }
  });
});
