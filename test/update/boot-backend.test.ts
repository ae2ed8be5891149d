// The boot backend (image-build/files/outpost-boot) on a folder standing in for the boot partition:
// what RAUC's four calls do to systemd-boot's entries (efi) and to config.txt (rpi), with systemd-boot's
// counting done by hand as it does it. Runs as any user: no RAUC, no loop devices.
import { spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REPO } from '../support/processes.js';

const BACKEND = join(REPO, 'image-build/files/outpost-boot');

describe.each(['efi', 'rpi'] as const)('outpost-boot, %s method', (method) => {
  let dir: string;
  let esp: string;
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    OUTPOST_BOOT_CONF: join(dir, 'boot.conf'),
    PROC_CMDLINE: join(dir, 'cmdline'),
    DT_CHOSEN: join(dir, 'chosen'),
    VCIO: join(dir, 'vcio'),
    DT_MODEL: join(dir, 'model'),
  });
  const boot = (...args: string[]) => {
    const result = spawnSync('bash', [BACKEND, ...args], { encoding: 'utf8', env: env() });
    return { status: result.status, out: result.stdout.trim(), err: result.stderr.trim() };
  };
  const ok = (...args: string[]): string => {
    const result = boot(...args);
    expect(result.status, result.err).toBe(0);
    return result.out;
  };
  const bootAs = (slot: 'A' | 'B', tryboot = false): void => {
    writeFileSync(
      join(dir, 'cmdline'),
      `root=PARTUUID=4f757470-0${slot === 'A' ? 2 : 3} rauc.slot=${slot}\n`,
    );
    mkdirSync(join(dir, 'chosen/bootloader'), { recursive: true });
    writeFileSync(join(dir, 'chosen/bootloader/tryboot'), Buffer.from([0, 0, 0, tryboot ? 1 : 0]));
  };
  const entries = (): string[] => readdirSync(join(esp, 'loader/entries')).sort();
  /** systemd-boot before starting an entry on trial. */
  const countTry = (): void => {
    for (const name of entries()) {
      const match = /^(outpost-\d+-[ab])\+1\.conf$/.exec(name);
      if (match)
        renameSync(join(esp, 'loader/entries', name), join(esp, 'loader/entries', `${match[1]}+0-1.conf`));
    }
  };
  const rootWithKernel = (version: string): string => {
    const root = join(dir, `root-${version}`);
    mkdirSync(join(root, 'boot'), { recursive: true });
    mkdirSync(join(root, 'usr/lib/outpost'), { recursive: true });
    mkdirSync(join(root, 'usr/lib/linux-image-6.1.0-test/broadcom'), { recursive: true });
    writeFileSync(join(root, 'boot/vmlinuz-6.1.0-test'), `kernel ${version}`);
    writeFileSync(join(root, 'boot/initrd.img-6.1.0-test'), 'initrd');
    writeFileSync(join(root, 'usr/lib/linux-image-6.1.0-test/broadcom/bcm2711-rpi-4-b.dtb'), 'dtb');
    writeFileSync(join(root, 'usr/lib/outpost/release'), `VERSION=${version}\n`);
    return root;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'outpost-boot-'));
    esp = join(dir, 'esp');
    mkdirSync(join(esp, 'loader/entries'), { recursive: true });
    writeFileSync(join(esp, 'config.txt'), 'arm_64bit=1\nenable_uart=1\n');
    writeFileSync(
      join(dir, 'boot.conf'),
      `BOOT_METHOD=${method}\nESP=${esp}\nDISK_ID=4f757470\nTRIES=1\nCMDLINE="console=ttyS0"\n`,
    );
    bootAs('A');
    ok('install-kernel', 'A', rootWithKernel('1.0.0'));
    ok('init', 'A');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('starts with slot A committed and B out of the boot order', () => {
    expect(ok('get-primary')).toBe('A');
    expect(ok('get-state', 'A')).toBe('good');
    expect(ok('get-state', 'B')).toBe('bad');
    expect(readFileSync(join(esp, 'slot-a/vmlinuz'), 'utf8')).toBe('kernel 1.0.0');
    if (method === 'efi') {
      expect(entries()).toEqual(['outpost-1-a.conf']);
      expect(readFileSync(join(esp, 'loader/entries/outpost-1-a.conf'), 'utf8')).toMatch(
        /^options root=PARTUUID=4f757470-02 .*rauc\.slot=A panic=10 console=ttyS0$/m,
      );
    } else {
      expect(readFileSync(join(esp, 'config.txt'), 'utf8')).toMatch(
        /^arm_64bit=1\n.*\[all\]\nos_prefix=slot-a\/\n$/s,
      );
      expect(readFileSync(join(esp, 'slot-a/cmdline.txt'), 'utf8')).toMatch(
        /root=PARTUUID=4f757470-02 .*rauc\.slot=A/,
      );
      expect(readFileSync(join(esp, 'slot-a/bcm2711-rpi-4-b.dtb'), 'utf8')).toBe('dtb');
    }
  });

  it('a new slot on trial: one boot; committed it becomes the slot that boots', () => {
    ok('set-state', 'B', 'bad'); // RAUC, before writing the slot
    ok('install-kernel', 'B', rootWithKernel('2.0.0')); // the bundle's hook
    ok('set-primary', 'B'); // RAUC, once written
    expect(ok('get-primary')).toBe('B');
    if (method === 'efi') {
      expect(entries()).toEqual(['outpost-1-a.conf', 'outpost-2-b+1.conf']);
      countTry();
      // The try used: systemd-boot would start A next, unless B commits during this boot.
      expect(ok('get-primary')).toBe('A');
      bootAs('B');
    } else {
      expect(readFileSync(join(esp, 'config.txt'), 'utf8')).toMatch(
        /\[all\]\nos_prefix=slot-a\/\n\[tryboot\]\nos_prefix=slot-b\/\n$/,
      );
      bootAs('B', true);
    }
    expect(boot('is-trial').status).toBe(0);
    ok('set-state', 'B', 'good'); // the health gate, through rauc status mark-good
    expect(boot('is-trial').status).toBe(1);
    expect(ok('get-primary')).toBe('B');
    if (method === 'efi') expect(entries()).toEqual(['outpost-1-a.conf', 'outpost-2-b.conf']);
    else expect(readFileSync(join(esp, 'config.txt'), 'utf8')).toMatch(/\[all\]\nos_prefix=slot-b\/\n$/);
  });

  it('a slot on trial marked bad is out of the boot order: the committed slot boots', () => {
    ok('set-state', 'B', 'bad');
    ok('install-kernel', 'B', rootWithKernel('3.0.0'));
    ok('set-primary', 'B');
    if (method === 'efi') countTry();
    bootAs('B', method === 'rpi');
    ok('set-state', 'B', 'bad'); // the health gate gave up
    expect(ok('get-primary')).toBe('A');
    expect(ok('get-state', 'B')).toBe('bad');
    if (method === 'efi') expect(entries()).toEqual(['outpost-1-a.conf']);
    else expect(readFileSync(join(esp, 'config.txt'), 'utf8')).not.toMatch(/\[tryboot\]/);
  });

  it('refuses nonsense with a message and a status', () => {
    expect(boot('set-state', 'C', 'good')).toMatchObject({
      status: 1,
      err: "outpost-boot: slot must be A or B, not 'C'",
    });
    expect(boot('set-state', 'B', 'maybe').status).toBe(1);
    expect(boot('frobnicate').err).toMatch(/^outpost-boot: usage:/);
  });

  it.runIf(method === 'rpi')(
    'refuses a trial where the kernel cannot pass the tryboot flag (no /dev/vcio)',
    () => {
      const result = boot('can-trial');
      expect(result.status).toBe(1);
      expect(result.err).toMatch(/this kernel cannot pass the firmware's tryboot flag \(no \/dev\/vcio/);
      writeFileSync(join(dir, 'vcio'), '');
      writeFileSync(join(dir, 'model'), 'Raspberry Pi 4 Model B Rev 1.5\0');
      expect(boot('can-trial').status).toBe(0);
    },
  );

  it.runIf(method === 'rpi')('refuses a trial on a board without tryboot (Pi 3, Zero 2 W)', () => {
    writeFileSync(join(dir, 'vcio'), '');
    for (const model of ['Raspberry Pi 3 Model B Plus Rev 1.3', 'Raspberry Pi Zero 2 W Rev 1.0']) {
      writeFileSync(join(dir, 'model'), `${model}\0`);
      const result = boot('can-trial');
      expect(result.status).toBe(1);
      expect(result.err).toContain(`this board (${model}) has no tryboot`);
    }
    for (const model of [
      'Raspberry Pi 400 Rev 1.0',
      'Raspberry Pi Compute Module 4 Rev 1.0',
      'Raspberry Pi 5 Model B Rev 1.0',
    ]) {
      writeFileSync(join(dir, 'model'), `${model}\0`);
      expect(boot('can-trial').status, model).toBe(0);
    }
  });
});
