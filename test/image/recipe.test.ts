// The SD-card image's recipe, checked without building or booting it: the stage list, and the
// "outpost-files" stage (image-build/stages/install-outpost.sh) run against an empty folder: the units
// enabled, the outpost user and its groups, file modes, the journald drop-in, time without public NTP,
// the partitions in fstab and the unit that grows the data partition; then first boot applied to such a
// root (modes for the image's outpost group, chrony's role settings where the image's chrony reads
// them). The full build and a qemu boot (where the data partition really grows) are `npm run test:image`.
import { spawnSync } from 'node:child_process';
import {
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  existsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firstboot } from '../../provisioning/src/firstboot.js';
import { REPO } from '../support/processes.js';
import { provisionedSite } from '../support/provisioning.js';

const installer = `${REPO}/image-build/stages/install-outpost.sh`;

function install(root: string, ...options: string[]): void {
  const result = spawnSync('bash', [installer, root, ...options], { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
}

const mode = (path: string): number => statSync(path).mode & 0o7777;
const lines = (path: string): string[] => readFileSync(path, 'utf8').split('\n');

describe('image recipe', () => {
  let root: string;
  let readOnlyRoot: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'outpost-image-root-'));
    readOnlyRoot = mkdtempSync(join(tmpdir(), 'outpost-image-ro-'));
    install(root);
    install(readOnlyRoot, '--read-only-root');
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(readOnlyRoot, { recursive: true, force: true });
  });

  it('builds in the documented stages, in order', () => {
    const result = spawnSync('bash', [`${REPO}/image-build/build.sh`, '--list-stages'], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n')).toEqual([
      'compile',
      'rootfs',
      'manifest',
      'bootfs',
      'slot',
      'disk',
      'bundle',
      'compress',
    ]);
  });

  it('installs the compiled daemon, its package files and the commands', () => {
    for (const file of [
      'dist/daemon/src/cli.js',
      'dist/provisioning/src/cli.js',
      // The site console's page, served by the hub (docs/console.md).
      'dist/console/index.html',
      'package.json',
      'package-lock.json',
    ]) {
      expect(existsSync(`${root}/usr/lib/outpost/${file}`), file).toBe(true);
    }
    // version.ts reads package.json three levels above dist/daemon/src.
    expect(existsSync(`${root}/usr/lib/outpost/dist/daemon/src/version.js`)).toBe(true);
    for (const command of ['outpost', 'outpost-provision']) {
      expect(mode(`${root}/usr/bin/${command}`)).toBe(0o755);
    }
    expect(mode(`${root}/usr/lib/outpost/dist/daemon/src/cli.js`) & 0o022).toBe(0);
  });

  it('installs both units and enables them for multi-user.target', () => {
    for (const unit of ['outpost.service', 'outpost-firstboot.service']) {
      const installed = `${root}/usr/lib/systemd/system/${unit}`;
      expect(readFileSync(installed, 'utf8')).toBe(readFileSync(`${REPO}/systemd/${unit}`, 'utf8'));
      expect(mode(installed)).toBe(0o644);
      expect(readlinkSync(`${root}/etc/systemd/system/multi-user.target.wants/${unit}`)).toBe(
        `/usr/lib/systemd/system/${unit}`,
      );
    }
  });

  it('creates the outpost user, a system account without a shell, in the video and gpio groups', () => {
    const passwd = lines(`${root}/etc/passwd`).find((line) => line.startsWith('outpost:'));
    const [, , uid, , , home, shell] = passwd?.split(':') ?? [];
    expect(Number(uid)).toBeLessThan(1000);
    expect(home).toBe('/var/lib/outpost');
    expect(shell).toBe('/usr/sbin/nologin');
    const groups = lines(`${root}/etc/group`);
    for (const group of ['video', 'gpio']) {
      const line = groups.find((entry) => entry.startsWith(`${group}:`));
      expect(line?.split(':')[3]?.split(','), group).toContain('outpost');
    }
    expect(readFileSync(`${root}/etc/udev/rules.d/99-outpost-gpio.rules`, 'utf8')).toMatch(/GROUP="gpio"/);
  });

  it('installs the journald drop-in for SD cards as /etc/systemd/journald.conf.d/outpost.conf', () => {
    const dropIn = `${root}/etc/systemd/journald.conf.d/outpost.conf`;
    expect(readFileSync(dropIn, 'utf8')).toBe(readFileSync(`${REPO}/systemd/journald-outpost.conf`, 'utf8'));
    expect(mode(dropIn)).toBe(0o644);
    expect(lines(dropIn)).toContain('Storage=volatile');
  });

  it('bakes in chrony without public NTP; the role’s time settings are left to first boot', () => {
    const chrony = readFileSync(`${root}/etc/chrony/conf.d/outpost.conf`, 'utf8');
    expect(chrony).toMatch(/^makestep 1 3$/m);
    // Serving (hub) and following (camera) come from the bundle: provisioning/src/chrony.ts.
    expect(chrony).not.toMatch(/^(pool|server|peer|allow|local) /m);
    expect(existsSync(`${root}/etc/chrony/conf.d/outpost-role.conf`)).toBe(false);
  });

  it('first boot on the image’s root: the outpost group reads /etc/outpost, chrony follows the hub', async () => {
    const provisioned = mkdtempSync(join(tmpdir(), 'outpost-image-provisioned-'));
    try {
      install(provisioned);
      const site = await provisionedSite();
      writeFileSync(`${provisioned}/boot/firmware/outpost-bundle.json`, site.cameraBundle);
      const quiet = { info: () => undefined, warn: () => undefined };
      expect(await firstboot({ root: provisioned, log: quiet, hostname: false })).toBe('applied');
      // The file lands where the image's chrony reads it (confdir), beside the baked settings.
      const role = readFileSync(`${provisioned}/etc/chrony/conf.d/outpost-role.conf`, 'utf8');
      expect(role).toMatch(/^server 192\.168\.10\.2 iburst$/m);
      expect(readFileSync(`${provisioned}/etc/chrony/conf.d/outpost.conf`, 'utf8')).toMatch(/^makestep /m);
      const dir = statSync(`${provisioned}/etc/outpost`);
      expect((dir.mode & 0o7777).toString(8)).toBe('750');
      if (process.getuid?.() === 0) {
        // Owned by the image's own outpost group (systemd-sysusers made it in that root).
        const group = lines(`${provisioned}/etc/group`).find((line) => line.startsWith('outpost:'));
        expect([dir.uid, dir.gid]).toEqual([0, Number(group?.split(':')[2])]);
      }
    } finally {
      rmSync(provisioned, { recursive: true, force: true });
    }
  });

  it('mounts the boot partition where bundles go, and the data dir on its own partition', () => {
    const fstab = lines(`${root}/etc/fstab`).filter((line) => line && !line.startsWith('#'));
    const mounts = Object.fromEntries<string[]>(
      fstab.map((line) => line.split(/\s+/)).map((fields) => [fields[1] ?? '', fields]),
    );
    // No line for /: the kernel mounts the root slot it was started with (A = 2, B = 3), read-write.
    expect(mounts['/']).toBeUndefined();
    expect(mounts['/boot/firmware']?.slice(0, 3)).toEqual(['PARTUUID=4f757470-01', '/boot/firmware', 'vfat']);
    expect(mounts['/data']?.slice(0, 3)).toEqual(['PARTUUID=4f757470-04', '/data', 'ext4']);
    // The daemon's data dir and the box's configuration live on the data partition, which both slots see.
    expect(mounts['/var/lib/outpost']?.slice(0, 4)).toEqual([
      '/data/outpost',
      '/var/lib/outpost',
      'none',
      'bind,x-systemd.requires-mounts-for=/data',
    ]);
    expect(readlinkSync(`${root}/etc/outpost`)).toBe('../data/etc/outpost');
    expect(mounts['/tmp']?.[2]).toBe('tmpfs'); // PrivateTmp= needs a writable /tmp
    expect(statSync(`${root}/var/lib/outpost`).isDirectory()).toBe(true);
    expect(statSync(`${root}/boot/firmware`).isDirectory()).toBe(true);
    expect(readFileSync(`${root}/etc/hostname`, 'utf8')).toBe('outpost\n');
  });

  it('grows the data partition to the card at every boot, before the daemon, with the tools in the image', () => {
    const unit = readFileSync(`${root}/usr/lib/systemd/system/outpost-grow-data.service`, 'utf8');
    expect(unit).toMatch(/^RequiresMountsFor=\/data$/m);
    expect(unit).toMatch(/^Before=outpost\.service$/m);
    expect(unit).toMatch(/^ExecStart=\/usr\/lib\/outpost\/grow-data \/data$/m);
    expect(readlinkSync(`${root}/etc/systemd/system/multi-user.target.wants/outpost-grow-data.service`)).toBe(
      '/usr/lib/systemd/system/outpost-grow-data.service',
    );
    expect(mode(`${root}/usr/lib/outpost/grow-data`)).toBe(0o755);
    const syntax = spawnSync('bash', ['-n', `${root}/usr/lib/outpost/grow-data`], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
    // sfdisk is in the fdisk package, which the rootfs stage must install (partx, findmnt: util-linux).
    const build = readFileSync(`${REPO}/image-build/build.sh`, 'utf8');
    expect(build).toMatch(/^ {2}fdisk$/m);
  });

  it('grows the data partition from a sandboxed unit: exposure 2.0 or lower', () => {
    const unit = `${root}/usr/lib/systemd/system/outpost-grow-data.service`;
    const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', unit], {
      encoding: 'utf8',
    });
    const match = /Overall exposure level for outpost-grow-data\.service: ([\d.]+) (\w+)/.exec(result.stdout);
    expect(match, result.stdout + result.stderr).not.toBeNull();
    process.stdout.write(`systemd-analyze security outpost-grow-data.service: ${match![1]} ${match![2]}\n`);
    expect(Number(match![1])).toBeLessThanOrEqual(2.0);
    // Its two capabilities: BLKPG (partx) and ext4's online resize; nothing else.
    expect(readFileSync(unit, 'utf8')).toMatch(/^CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_RESOURCE$/m);
  });

  it('the grow script refuses a folder that is not a mount point, changing nothing', () => {
    const folder = mkdtempSync(join(tmpdir(), 'outpost-not-mounted-'));
    try {
      const result = spawnSync('bash', [`${root}/usr/lib/outpost/grow-data`, folder], { encoding: 'utf8' });
      expect(result.status).toBe(1);
      expect(result.stdout).toMatch(/nothing mounted on .* from a block device: not growing/);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('with --read-only-root: / is remounted read-only after first boot, before the daemon starts', () => {
    const fstab = lines(`${readOnlyRoot}/etc/fstab`);
    expect(fstab.some((line) => /\s\/var\/tmp\s+tmpfs\s/.test(line))).toBe(true);
    const unit = readFileSync(`${readOnlyRoot}/etc/systemd/system/outpost-read-only-root.service`, 'utf8');
    expect(unit).toMatch(/^ExecStart=\/bin\/mount -o remount,ro \/$/m);
    expect(unit).toMatch(/^After=outpost-firstboot\.service/m);
    expect(unit).toMatch(/^Before=outpost\.service$/m);
    expect(
      readlinkSync(
        `${readOnlyRoot}/etc/systemd/system/multi-user.target.wants/outpost-read-only-root.service`,
      ),
    ).toBe('/etc/systemd/system/outpost-read-only-root.service');
    expect(existsSync(`${root}/etc/systemd/system/outpost-read-only-root.service`)).toBe(false);
  });
});
