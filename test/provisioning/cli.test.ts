// outpost-provision end to end, as a tech runs it: init → add devices and accounts → bundle → verify
// → first boot into a temp root; usage mistakes exit 2 and bundle problems 10–13.
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseIdentities, verifyPassword } from '../../daemon/src/mqtt/identities.js';
import { tempDir } from '../support/processes.js';
import { flipOneByte, provision } from '../support/provisioning.js';

describe('outpost-provision', () => {
  it('init → add → bundle → verify → first boot, each step idempotent', async () => {
    const work = await tempDir('outpost-cli-');
    const dir = join(work, 'site');
    const init = provision('site', 'init', dir, '--site=plant-7', '--hub-host=hub', '--hub-ip=10.1.0.2');
    expect(init.code, init.stderr).toBe(0);
    process.stdout.write(`outpost-provision site init: ${Math.round(init.ms)} ms (process included)\n`);
    expect(init.stdout).toMatch(/site CA fingerprint \(SHA-256\): [0-9a-f]{64}/);
    expect(
      provision('site', 'init', dir, '--site', 'plant-7', '--hub-host', 'hub', '--hub-ip', '10.1.0.2').stdout,
    ).toMatch(/nothing changed/);

    const addCam = [
      'device',
      'add',
      'cam-gate',
      '--role',
      'camera',
      '--cameras',
      'cam0,cam1',
      '--cert',
      '-d',
      dir,
    ];
    const cam = provision(...addCam);
    expect(cam.code, cam.stderr).toBe(0);
    expect(provision(...addCam).stdout).toMatch(/already exists as asked/);

    const ops = provision('console', 'add', 'ops1', '-d', dir);
    expect(ops.code, ops.stderr).toBe(0);
    const password = /shown once; only its hash is kept\): (\S+)/.exec(ops.stdout)?.[1];
    expect(password).toBeDefined();
    const passwordFile = join(work, 'guard.password');
    const staff = provision('staff', 'add', 'guard1', '--password-file', passwordFile, '-d', dir);
    expect(staff.code, staff.stderr).toBe(0);
    expect(((await stat(passwordFile)).mode & 0o777).toString(8)).toBe('600');
    expect(provision('staff', 'add', 'guard1', '--password-file', passwordFile, '-d', dir).stdout).toMatch(
      /already exists as asked/,
    );
    expect(provision('staff', 'add', 'guard2', '--password-file', passwordFile, '-d', dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(
        /--password-file .* exists \(give another file, or add --force/,
      ) as unknown,
    });
    const identities = parseIdentities(
      await readFile(join(dir, 'identities.json'), 'utf8'),
      'identities.json',
    );
    const byName = new Map(identities.identities.map((i) => [i.name, i]));
    expect(await verifyPassword(password!, byName.get('ops1')!.password!)).toBe(true);
    expect(
      await verifyPassword((await readFile(passwordFile, 'utf8')).trim(), byName.get('guard1')!.password!),
    ).toBe(true);
    expect(byName.get('guard1')!.role).toBe('staff');

    const out = join(work, 'boot/firmware/outpost-bundle.json');
    await mkdir(join(work, 'boot/firmware'), { recursive: true });
    const bundle = provision('bundle', 'cam-gate', '--out', out, '-d', dir);
    expect(bundle.code, bundle.stderr).toBe(0);
    process.stdout.write(`${bundle.stdout.split('\n')[0]}\n`);
    expect(provision('bundle', 'cam-gate', '--out', out, '-d', dir).stdout).toMatch(
      /already holds this bundle/,
    );
    expect(provision('bundle', 'hub', '--out', out, '-d', dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--force/) as unknown,
    });

    const verify = provision('bundle', 'verify', out, '--ca', join(dir, 'ca/ca.crt'));
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/OK: camera cam-gate on site plant-7/);
    expect(verify.stdout).toMatch(/0600 \/etc\/outpost\/tls\/client\.key/);

    await mkdir(join(work, 'etc'));
    const boot = provision('firstboot', '--root', work);
    expect(boot.code, boot.stderr).toBe(0);
    expect(boot.stderr).toMatch(/"event":"installed"/);
    expect(await readFile(join(work, 'etc/hostname'), 'utf8')).toBe('cam-gate\n');
    expect(await readdir(join(work, 'boot/firmware'))).toEqual([]);
    expect(provision('firstboot', '--root', work).code).toBe(0);
  });

  it('revoke takes an identity out of the hub bundle', async () => {
    const dir = join(await tempDir('outpost-cli-'), 'site');
    provision('site', 'init', dir, '--site', 'plant-7');
    provision('device', 'add', 'cam-a', '--role', 'camera', '-d', dir);
    const revoke = provision('device', 'revoke', 'cam-a', '-d', dir);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toMatch(/cam-a revoked: re-bundle the hub/);
    const identities = JSON.parse(await readFile(join(dir, 'identities.json'), 'utf8')) as {
      identities: { name: string }[];
    };
    expect(identities.identities.map((i) => i.name)).toEqual(['hub']);
  });

  it('usage mistakes exit 2 naming the fix; bad bundles exit 10–12', async () => {
    const work = await tempDir('outpost-cli-');
    const dir = join(work, 'site');
    expect(provision('site', 'init', dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--site/) as unknown,
    });
    expect(provision('site', 'init', dir, '--site', 'Plant')).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/site "Plant" is not a valid name \(use 1–32 lowercase/) as unknown,
    });
    expect(provision('device', 'add', 'cam-a', '--role', 'camera', '-d', dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/not a site directory.*site init/) as unknown,
    });
    provision('site', 'init', dir, '--site', 'plant-7');
    expect(provision('device', 'add', 'cam-a', '--role', 'bogus', '-d', dir).code).toBe(2);
    expect(provision('bundle', 'nope', '--out', join(work, 'b.json'), '-d', dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/no device "nope"/) as unknown,
    });
    expect(provision('bundle', 'verify', join(work, 'b.json')).stderr).toMatch(
      /--ca SITE\/ca\/ca\.crt or --fingerprint/,
    );

    const good = join(work, 'good.json');
    expect(provision('bundle', 'hub', '--out', good, '-d', dir).code).toBe(0);
    const text = await readFile(good, 'utf8');
    const ca = join(dir, 'ca/ca.crt');
    await writeFile(join(work, 'flipped.json'), flipOneByte(text));
    await writeFile(join(work, 'cut.json'), text.slice(0, 200));
    const otherDir = join(work, 'other');
    provision('site', 'init', otherDir, '--site', 'plant-7');
    expect(provision('bundle', 'verify', join(work, 'cut.json'), '--ca', ca).code).toBe(10);
    expect(provision('bundle', 'verify', join(work, 'flipped.json'), '--ca', ca).code).toBe(11);
    expect(provision('bundle', 'verify', good, '--ca', join(otherDir, 'ca/ca.crt')).code).toBe(12);
  });
});
