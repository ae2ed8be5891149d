// The updater as the image build installs it (image-build/stages/install-outpost.sh into an empty
// folder): RAUC's system.conf for the two slots and our boot backend, the keyring, the release facts,
// the update units enabled and sandboxed, the USB rule, RAUC locked to root on D-Bus, systemd-boot's own
// blessing masked. The units verify with systemd-analyze. Booting it is `npm run test:update`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../support/processes.js';

const units = [
  'outpost-update-gate.service',
  'outpost-update-deadline.service',
  'outpost-update-install.service',
  'outpost-update-usb@.service',
  'outpost-firstboot-led.service',
];

function securityScore(unit: string): number {
  const result = spawnSync(
    'systemd-analyze',
    ['security', '--offline=true', '--no-pager', join(REPO, 'systemd', unit)],
    {
      encoding: 'utf8',
    },
  );
  const match = /Overall exposure level for \S+: ([\d.]+)/.exec(result.stdout);
  expect(match, result.stdout + result.stderr).not.toBeNull();
  process.stdout.write(`systemd-analyze security ${unit}: ${match![1]}\n`);
  return Number(match![1]);
}

describe('image recipe: updates', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'outpost-image-update-'));
    const keyring = join(root, '..', `${root.split('/').pop()}-keyring.pem`);
    writeFileSync(keyring, '-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n');
    const result = spawnSync(
      'bash',
      [
        `${REPO}/image-build/stages/install-outpost.sh`,
        root,
        '--arch',
        'arm64',
        '--boot',
        'rpi',
        '--version',
        '1.2.3',
        '--keyring',
        keyring,
        '--health-window',
        '600',
      ],
      { encoding: 'utf8' },
    );
    rmSync(keyring, { force: true });
    expect(result.status, result.stderr).toBe(0);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('says which release the root is: version, arch, boot method, compatible string', () => {
    expect(readFileSync(`${root}/usr/lib/outpost/release`, 'utf8')).toBe(
      'VERSION=1.2.3\nARCH=arm64\nBOOT_METHOD=rpi\nCOMPATIBLE=outpost-arm64-rpi\n',
    );
    expect(JSON.parse(readFileSync(`${root}/usr/lib/outpost/package.json`, 'utf8'))).toMatchObject({
      version: '1.2.3',
    });
  });

  it('configures RAUC: two root slots by partition, our boot backend, plain bundles checked against the keyring', () => {
    const conf = readFileSync(`${root}/etc/rauc/system.conf`, 'utf8');
    expect(conf).toMatch(/^compatible=outpost-arm64-rpi$/m);
    expect(conf).toMatch(/^bootloader=custom$/m);
    expect(conf).toMatch(/^bootloader-custom-backend=\/usr\/lib\/outpost\/update\/boot$/m);
    expect(conf).toMatch(/^statusfile=\/data\/update\/rauc\.status$/m);
    expect(conf).toMatch(/^bundle-formats=plain$/m);
    expect(conf).toMatch(/^check-purpose=codesign$/m);
    expect(conf).toMatch(
      /\[slot\.rootfs\.0\]\ndevice=\/dev\/disk\/by-partuuid\/4f757470-02\ntype=ext4\nbootname=A\nresize=true/,
    );
    expect(conf).toMatch(
      /\[slot\.rootfs\.1\]\ndevice=\/dev\/disk\/by-partuuid\/4f757470-03\ntype=ext4\nbootname=B\nresize=true/,
    );
    expect(readFileSync(`${root}/etc/rauc/keyring.pem`, 'utf8')).toMatch(/BEGIN CERTIFICATE/);
    expect(statSync(`${root}/usr/lib/outpost/update/boot`).mode & 0o777).toBe(0o755);
    expect(readFileSync(`${root}/usr/lib/outpost/update/boot.conf`, 'utf8')).toMatch(/^BOOT_METHOD=rpi$/m);
    // Only root may drive RAUC over D-Bus (Debian's policy lets anyone).
    const policy = readFileSync(`${root}/etc/dbus-1/system.d/outpost-rauc.conf`, 'utf8');
    expect(policy).toMatch(/<policy context="default">\s*<deny send_destination="de\.pengutronix\.rauc"\/>/);
  });

  it('enables the gate, its safety net and the install path; masks systemd-boot’s own blessing', () => {
    for (const unit of [
      'outpost-update-gate.service',
      'outpost-update-deadline.service',
      'outpost-update-install.path',
    ]) {
      expect(readlinkSync(`${root}/etc/systemd/system/multi-user.target.wants/${unit}`)).toBe(
        `/usr/lib/systemd/system/${unit}`,
      );
    }
    expect(readlinkSync(`${root}/etc/systemd/system/systemd-bless-boot.service`)).toBe('/dev/null');
    expect(readFileSync(`${root}/etc/udev/rules.d/90-outpost-update-usb.rules`, 'utf8')).toMatch(
      /SUBSYSTEMS=="usb".*SYSTEMD_WANTS.*outpost-update-usb@%k\.service/,
    );
    expect(
      readFileSync(`${root}/etc/systemd/system/outpost-update-gate.service.d/window.conf`, 'utf8'),
    ).toMatch(/^Environment=OUTPOST_UPDATE_WINDOW_SECONDS=600$/m);
    expect(
      readFileSync(`${root}/etc/systemd/system/outpost-update-deadline.service.d/window.conf`, 'utf8'),
    ).toMatch(/^Environment=OUTPOST_UPDATE_DEADLINE_SECONDS=840$/m);
  });

  it('keeps the box’s configuration and data on the data partition, for both slots', () => {
    expect(readlinkSync(`${root}/etc/outpost`)).toBe('../data/etc/outpost');
    expect(statSync(`${root}/data`).isDirectory()).toBe(true);
  });

  it.each(units)('%s verifies with no warnings', (unit) => {
    const result = spawnSync('systemd-analyze', ['verify', join(REPO, 'systemd', unit)], {
      encoding: 'utf8',
    });
    const warnings = `${result.stdout}${result.stderr}`
      .split('\n')
      .filter(
        (line) =>
          line &&
          !/is not executable|No such file or directory|Failed to prepare filename|Unit .* not found/.test(
            line,
          ),
      );
    expect(warnings).toEqual([]);
  });

  it('runs the gate and the installer sandboxed: exposure 2.5 or lower', () => {
    expect(securityScore('outpost-update-gate.service')).toBeLessThanOrEqual(2.5);
    expect(securityScore('outpost-update-install.service')).toBeLessThanOrEqual(2.5);
    expect(securityScore('outpost-update-deadline.service')).toBeLessThanOrEqual(2.5);
  });
});
