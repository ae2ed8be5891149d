// First boot into a temp root: a good bundle is installed whole (files, modes, hostname) and wiped; a
// bad one changes nothing and stays; a bundle already applied changes nothing and is still wiped.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  exitCodeFor,
  firstboot,
  FirstbootExit,
  type FirstbootLog,
} from '../../provisioning/src/firstboot.js';
import { REPO, tempDir } from '../support/processes.js';
import { flipOneByte, provisionedSite, resign } from '../support/provisioning.js';
import { outpostFailure } from '../support/errors.js';

function recorder(): FirstbootLog & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    info: (fields) => events.push(String((fields as { event: string }).event)),
    warn: (fields) => events.push(String((fields as { event: string }).event)),
  };
}

async function newRoot(): Promise<{ root: string; bundle: string }> {
  const root = await tempDir('outpost-root-');
  await mkdir(join(root, 'boot/firmware'), { recursive: true });
  await mkdir(join(root, 'etc/chrony/conf.d'), { recursive: true }); // chrony is in the image
  await writeFile(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n');
  await writeFile(join(root, 'etc/hostname'), 'raspberrypi\n');
  return { root, bundle: join(root, 'boot/firmware/outpost-bundle.json') };
}

/** A new root that first boot has provisioned once, with a bundle of a new site for that role. */
async function firstBooted(role: 'camera' | 'hub') {
  const site = await provisionedSite();
  const { root, bundle } = await newRoot();
  await writeFile(bundle, role === 'camera' ? site.cameraBundle : site.hubBundle);
  await firstboot({ root, log: recorder() });
  return { site, root, bundle };
}

/** Every file under ROOT/etc with its mode and content hash: "nothing changed" is this being equal. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const info = await stat(full);
      if (entry.isDirectory()) {
        result[full] = `dir ${(info.mode & 0o777).toString(8)}`;
        await walk(full);
      } else {
        const hash = createHash('sha256')
          .update(await readFile(full))
          .digest('hex');
        result[full] = `${(info.mode & 0o777).toString(8)} ${hash} ${info.mtimeMs}`;
      }
    }
  }
  await walk(join(root, 'etc'));
  return result;
}

describe('first boot', () => {
  it('installs a good bundle with its modes, sets the hostname and wipes the bundle', async () => {
    const site = await provisionedSite();
    const { root, bundle } = await newRoot();
    await writeFile(bundle, site.hubBundle);
    const log = recorder();
    expect(await firstboot({ root, log })).toBe('applied');
    const modes: Record<string, string> = {};
    for (const file of [
      'outpost.yaml',
      'identities.json',
      'uplink.password',
      'tls/ca.crt',
      'tls/server.crt',
      'tls/server.key',
    ]) {
      modes[file] = ((await stat(join(root, 'etc/outpost', file))).mode & 0o777).toString(8);
    }
    expect(modes).toEqual({
      'outpost.yaml': '640',
      'identities.json': '600',
      'uplink.password': '600',
      'tls/ca.crt': '640',
      'tls/server.crt': '640',
      'tls/server.key': '600',
    });
    expect(await readFile(join(root, 'etc/outpost/tls/ca.crt'), 'utf8')).toBe(
      await readFile(join(site.dir, 'ca/ca.crt'), 'utf8'),
    );
    expect(await readFile(join(root, 'etc/hostname'), 'utf8')).toBe('hub\n');
    expect(await readFile(join(root, 'etc/hosts'), 'utf8')).toBe('127.0.0.1\tlocalhost\n127.0.1.1\thub\n');
    expect(await readdir(join(root, 'boot/firmware'))).toEqual([]);
    expect((await readdir(join(root, 'etc'))).filter((e) => e.startsWith('.outpost'))).toEqual([]);
    expect(log.events).toEqual(['trust', 'installed', 'time', 'hostname', 'wiped']);
  });

  it('re-applying the same bundle changes nothing and still wipes it', async () => {
    const { site, root, bundle } = await firstBooted('camera');
    const before = await snapshot(root);
    await writeFile(bundle, site.cameraBundle);
    const log = recorder();
    expect(await firstboot({ root, log })).toBe('unchanged');
    expect(await snapshot(root)).toEqual(before);
    expect(await readdir(join(root, 'boot/firmware'))).toEqual([]);
    expect(log.events).toEqual(['unchanged', 'wiped']);
  });

  it('a tampered, truncated, foreign or refused bundle changes nothing, stays on the card and exits with its own code', async () => {
    const site = await provisionedSite();
    const other = await provisionedSite();
    const { root, bundle } = await newRoot();
    await writeFile(bundle, site.cameraBundle);
    await firstboot({ root, log: recorder() });
    const installed = await snapshot(root);
    const cases: Array<[string, string, number]> = [
      ['flipped byte', flipOneByte(site.hubBundle), FirstbootExit.SIGNATURE],
      ['truncated', site.hubBundle.slice(0, 1000), FirstbootExit.MALFORMED],
      ['another site CA', other.cameraBundle, FirstbootExit.UNTRUSTED],
      [
        'signed, but a config the daemon refuses',
        resign(site.cameraBundle, await readFile(join(site.dir, 'ca/ca.key'), 'utf8'), (envelope) => {
          const config = envelope.files.find((file) => file.path === '/etc/outpost/outpost.yaml')!;
          config.base64 = Buffer.from('site: plant-7\ndevice: cam-north\nrole: camera\n').toString('base64');
        }),
        FirstbootExit.CONTENT,
      ],
    ];
    for (const [what, text, code] of cases) {
      await writeFile(bundle, text);
      const error = await outpostFailure(firstboot({ root, log: recorder() }));
      expect(exitCodeFor(error), `${what}: ${error.message}`).toBe(code);
      expect(await snapshot(root), what).toEqual(installed);
      expect(await readFile(bundle, 'utf8'), what).toBe(text);
    }
  });

  it('a bad bundle on a blank box installs nothing', async () => {
    const site = await provisionedSite();
    const { root, bundle } = await newRoot();
    const before = await snapshot(root);
    await writeFile(bundle, flipOneByte(site.cameraBundle));
    const error = await outpostFailure(firstboot({ root, log: recorder() }));
    expect(error.code).toBe('BUNDLE_SIGNATURE_INVALID');
    expect(await snapshot(root)).toEqual(before);
  });

  it('a fingerprint file pins the CA before first use', async () => {
    const site = await provisionedSite();
    const other = await provisionedSite();
    const { root, bundle } = await newRoot();
    const pin = join(root, 'boot/firmware/outpost-ca.sha256');
    const ca = await readFile(join(site.dir, 'ca/ca.crt'));
    const { X509Certificate } = await import('node:crypto');
    await writeFile(pin, `${createHash('sha256').update(new X509Certificate(ca).raw).digest('hex')}\n`);
    await writeFile(bundle, other.cameraBundle);
    expect((await outpostFailure(firstboot({ root, log: recorder() }))).code).toBe('BUNDLE_UNTRUSTED');
    await writeFile(bundle, site.cameraBundle);
    expect(await firstboot({ root, log: recorder() })).toBe('applied');
  });

  it('a new bundle from the same site replaces /etc/outpost whole; no bundle is not an error', async () => {
    const { site, root, bundle } = await firstBooted('camera');
    await writeFile(bundle, site.hubBundle);
    expect(await firstboot({ root, log: recorder() })).toBe('applied');
    expect(await readFile(join(root, 'etc/hostname'), 'utf8')).toBe('hub\n');
    await expect(stat(join(root, 'etc/outpost/tls/client.key'))).rejects.toThrow(/ENOENT/);
    expect(await firstboot({ root, log: recorder(), hostname: false })).toBe('no-bundle');
  });

  it.runIf(process.getuid?.() === 0)(
    'as root, hands the files to the outpost user of the image',
    async () => {
      const site = await provisionedSite();
      const { root, bundle } = await newRoot();
      await writeFile(
        join(root, 'etc/passwd'),
        'root:x:0:0:root:/root:/bin/sh\noutpost:x:4242:4343::/var/lib/outpost:/usr/sbin/nologin\n',
      );
      await writeFile(bundle, site.hubBundle);
      await firstboot({ root, log: recorder() });
      const key = await stat(join(root, 'etc/outpost/tls/server.key'));
      expect([key.uid, key.gid, (key.mode & 0o777).toString(8)]).toEqual([4242, 4343, '600']);
      const dir = await stat(join(root, 'etc/outpost'));
      expect([dir.uid, dir.gid, (dir.mode & 0o777).toString(8)]).toEqual([0, 4343, '750']);
      // Owners that drifted (a restore as root, a hand edit) are put back by the next run.
      await chown(join(root, 'etc/outpost/tls'), 0, 0);
      await chown(join(root, 'etc/outpost/tls/server.key'), 0, 0);
      await writeFile(bundle, site.hubBundle);
      const log = recorder();
      expect(await firstboot({ root, log })).toBe('unchanged');
      expect(log.events).toEqual(['modes-repaired', 'unchanged', 'wiped']);
      const tls = await stat(join(root, 'etc/outpost/tls'));
      expect([tls.uid, tls.gid]).toEqual([0, 4343]);
      const again = await stat(join(root, 'etc/outpost/tls/server.key'));
      expect([again.uid, again.gid, (again.mode & 0o777).toString(8)]).toEqual([4242, 4343, '600']);
    },
  );

  it('makes /etc/outpost 0750 and its files 0640/0600 itself, even under a umask of 0077', async () => {
    const site = await provisionedSite();
    const { root, bundle } = await newRoot();
    await writeFile(bundle, site.hubBundle);
    const umask = process.umask(0o077);
    try {
      expect(await firstboot({ root, log: recorder() })).toBe('applied');
    } finally {
      process.umask(umask);
    }
    const modeOf = async (path: string) => ((await stat(join(root, path))).mode & 0o7777).toString(8);
    expect(await modeOf('etc/outpost')).toBe('750');
    expect(await modeOf('etc/outpost/tls')).toBe('750');
    expect(await modeOf('etc/outpost/outpost.yaml')).toBe('640');
    expect(await modeOf('etc/outpost/tls/server.key')).toBe('600');
  });

  it('puts drifted directory modes back when the same bundle is applied again', async () => {
    const { site, root, bundle } = await firstBooted('hub');
    await chmod(join(root, 'etc/outpost'), 0o755);
    await chmod(join(root, 'etc/outpost/tls'), 0o700);
    await writeFile(bundle, site.hubBundle);
    const log = recorder();
    expect(await firstboot({ root, log })).toBe('unchanged');
    expect(log.events).toEqual(['modes-repaired', 'unchanged', 'wiped']);
    for (const dir of ['etc/outpost', 'etc/outpost/tls']) {
      expect(((await stat(join(root, dir))).mode & 0o777).toString(8), dir).toBe('750');
    }
  });

  it('writes chrony’s role settings: a camera follows the hub, the hub serves the site', async () => {
    const site = await provisionedSite();
    const { root, bundle } = await newRoot();
    const chrony = join(root, 'etc/chrony/conf.d/outpost-role.conf');
    const directives = async () =>
      (await readFile(chrony, 'utf8')).split('\n').filter((line) => line && !line.startsWith('#'));
    await writeFile(bundle, site.cameraBundle);
    await firstboot({ root, log: recorder() });
    // The site's hub IP (provisionedSite: --hub-ip 192.168.10.2), taken from the bundle's config.
    expect(await directives()).toEqual(['server 192.168.10.2 iburst']);
    expect(((await stat(chrony)).mode & 0o777).toString(8)).toBe('644');
    await writeFile(bundle, site.hubBundle);
    await firstboot({ root, log: recorder() });
    const hub = await directives();
    expect(hub).toContain('allow 192.168.0.0/16');
    expect(hub).toContain('local stratum 10');
    expect(hub.filter((line) => /^(server|pool|peer) /.test(line))).toEqual([]);
  });

  it('without chrony in the root, the bundle still applies and the time settings are skipped', async () => {
    const site = await provisionedSite();
    const { root, bundle } = await newRoot();
    await rm(join(root, 'etc/chrony'), { recursive: true });
    await writeFile(bundle, site.cameraBundle);
    const log = recorder();
    expect(await firstboot({ root, log })).toBe('applied');
    expect(log.events).toEqual(['trust', 'installed', 'time-skipped', 'hostname', 'wiped']);
    expect(existsSync(join(root, 'etc/chrony'))).toBe(false);
  });

  it('an install cut short between its two renames is repaired at the next run', async () => {
    const { root } = await firstBooted('camera');
    const installed = await snapshot(root);
    await rename(join(root, 'etc/outpost'), join(root, 'etc/.outpost.old-deadbeef'));
    await mkdir(join(root, 'etc/.outpost.new-cafebabe'));
    const log = recorder();
    expect(await firstboot({ root, log })).toBe('no-bundle');
    expect(log.events).toEqual(['recovered', 'no-bundle']);
    const after = await snapshot(root);
    expect(Object.keys(after).sort()).toEqual(Object.keys(installed).sort());
  });

  // The unit's CapabilityBoundingSet, applied with setpriv: enough to install, chown and (on the next
  // bundle) read the outpost-owned files back; one capability less is refused without a change.
  it.runIf(process.getuid?.() === 0 && existsSync('/usr/bin/setpriv'))(
    'works with only the capabilities outpost-firstboot.service grants',
    async () => {
      const unit = await readFile(join(REPO, 'systemd/outpost-firstboot.service'), 'utf8');
      const caps = /^CapabilityBoundingSet=(.*)$/m
        .exec(unit)![1]!
        .split(/\s+/)
        .map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`);
      const cli = join(REPO, 'dist/provisioning/src/cli.js');
      const run = (bounding: string[], root: string) =>
        spawnSync(
          'setpriv',
          [
            '--bounding-set',
            ['-all', ...bounding].join(','),
            '--inh-caps',
            '-all',
            '--',
            process.execPath,
            cli,
            'firstboot',
            '--root',
            root,
          ],
          {
            encoding: 'utf8',
            timeout: 30_000,
          },
        );
      const site = await provisionedSite();
      const { root, bundle } = await newRoot();
      await writeFile(join(root, 'etc/passwd'), 'outpost:x:4242:4343::/:/usr/sbin/nologin\n');
      await writeFile(bundle, site.hubBundle);
      expect(run(caps, root).status).toBe(0);
      await writeFile(bundle, site.cameraBundle);
      const second = run(caps, root);
      expect(second.status, second.stderr).toBe(0);
      const installed = await snapshot(root);
      await writeFile(bundle, site.hubBundle);
      const fewer = run(
        caps.filter((cap) => cap !== '+dac_read_search'),
        root,
      );
      expect(fewer.status).toBe(FirstbootExit.INSTALL);
      expect(fewer.stderr).toMatch(/could not read the installed configuration/);
      expect(await snapshot(root)).toEqual(installed);
    },
  );
});
