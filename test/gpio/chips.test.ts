// BCM numbers resolved through fake /sys and /dev trees: the chip base comes from the chip's label,
// never a fixed offset, and the character device is used where sysfs GPIO is missing.
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveLine, type ChardevChip } from '../../daemon/src/gpio/chips.js';
import { parseGpiodetect } from '../../daemon/src/gpio/gpiod-pin.js';
import { tempDir } from '../support/processes.js';
import { outpostFailure } from '../support/errors.js';

async function fakeSys(chips: Array<{ name: string; base: number; ngpio: number; label: string }>) {
  const root = await tempDir('outpost-sys-');
  await mkdir(join(root, 'class/gpio'), { recursive: true });
  await writeFile(join(root, 'class/gpio/export'), '');
  for (const chip of chips) {
    const dir = join(root, 'class/gpio', chip.name);
    await mkdir(dir);
    await writeFile(join(dir, 'base'), `${chip.base}\n`);
    await writeFile(join(dir, 'ngpio'), `${chip.ngpio}\n`);
    await writeFile(join(dir, 'label'), `${chip.label}\n`);
  }
  return root;
}

async function fakeDev(names: string[]) {
  const root = await tempDir('outpost-dev-');
  for (const name of names) await writeFile(join(root, name), '');
  return root;
}

const noChardev = () => Promise.reject(new Error('the chardev lister must not be asked'));

/** BCM line `bcm` resolved with only these sysfs chips (no character device is asked for). */
async function resolveOnSysfs(bcm: number, chips: Parameters<typeof fakeSys>[0]) {
  return resolveLine(bcm, {
    sysRoot: await fakeSys(chips),
    devRoot: await fakeDev([]),
    backend: 'auto',
    listChardev: noChardev,
  });
}

describe('GPIO chips', () => {
  it.each([
    {
      board: 'BCM 17 → sysfs GPIO 529 on a Pi 4 with kernel 6.6 (pinctrl-bcm2711 at base 512)',
      bcm: 17,
      chips: [
        { name: 'gpiochip512', base: 512, ngpio: 58, label: 'pinctrl-bcm2711' },
        { name: 'gpiochip570', base: 570, ngpio: 8, label: 'raspberrypi-exp-gpio' },
      ],
      expected: { gpio: 529, chip: { label: 'pinctrl-bcm2711' } },
    },
    {
      board: 'through a Pi 5 style RP1 chip at another base, ignoring the other chips',
      bcm: 17,
      chips: [
        { name: 'gpiochip512', base: 512, ngpio: 32, label: 'gpio-brcmstb@107d508500' },
        { name: 'gpiochip544', base: 544, ngpio: 4, label: 'gpio-brcmstb@107d517c00' },
        { name: 'gpiochip571', base: 571, ngpio: 54, label: 'pinctrl-rp1' },
      ],
      expected: { gpio: 588, chip: { label: 'pinctrl-rp1' } },
    },
    {
      board: 'an old kernel with pinctrl-bcm2835 at base 0 keeps plain BCM numbers',
      bcm: 27,
      chips: [{ name: 'gpiochip0', base: 0, ngpio: 54, label: 'pinctrl-bcm2835' }],
      expected: { gpio: 27 },
    },
  ])('resolves on sysfs: $board', async ({ bcm, chips, expected }) => {
    expect(await resolveOnSysfs(bcm, chips)).toMatchObject({ backend: 'sysfs', ...expected });
  });

  it('chooses the character device, by chip label and line offset, when /sys/class/gpio is absent', async () => {
    const sysRoot = await tempDir('outpost-sys-'); // no class/gpio at all
    const devRoot = await fakeDev(['gpiochip0', 'gpiochip10', 'gpiochip13']);
    const chips: ChardevChip[] = parseGpiodetect(
      [
        'gpiochip0 [pinctrl-rp1] (54 lines)',
        'gpiochip10 [gpio-brcmstb@107d508500] (32 lines)',
        'gpiochip13 [gpio-brcmstb@107d517c00] (4 lines)',
      ].join('\n'),
    );
    const line = await resolveLine(17, {
      sysRoot,
      devRoot,
      backend: 'auto',
      listChardev: () => Promise.resolve(chips),
    });
    expect(line).toEqual({
      backend: 'chardev',
      bcm: 17,
      chipPath: join(devRoot, 'gpiochip0'),
      chipLabel: 'pinctrl-rp1',
      offset: 17,
    });
  });

  it('falls back to the character device when sysfs GPIO is there but unusable (read-only /sys under systemd)', async () => {
    const sysRoot = await fakeSys([{ name: 'gpiochip512', base: 512, ngpio: 58, label: 'pinctrl-bcm2711' }]);
    await rm(join(sysRoot, 'class/gpio/export'));
    const devRoot = await fakeDev(['gpiochip0']);
    const chips = parseGpiodetect('gpiochip0 [pinctrl-bcm2711] (58 lines)');
    const line = await resolveLine(17, {
      sysRoot,
      devRoot,
      backend: 'auto',
      listChardev: () => Promise.resolve(chips),
    });
    expect(line).toMatchObject({ backend: 'chardev', chipLabel: 'pinctrl-bcm2711', offset: 17 });
  });

  it('says there is no GPIO interface, naming both paths, when neither exists', async () => {
    const sysRoot = await tempDir('outpost-sys-');
    const devRoot = await fakeDev([]);
    await expect(
      resolveLine(17, { sysRoot, devRoot, backend: 'auto', listChardev: noChardev }),
    ).rejects.toThrow(/no GPIO interface: neither .*class\/gpio nor .*gpiochip\*/);
  });

  it('names the chips it found when none has a known label, and the key that fixes it', async () => {
    const sysRoot = await fakeSys([{ name: 'gpiochip0', base: 0, ngpio: 8, label: 'gpio-mockup-A' }]);
    const error = await outpostFailure(
      resolveLine(3, {
        sysRoot,
        devRoot: '/nonexistent',
        backend: 'auto',
        listChardev: noChardev,
      }),
    );
    expect(error.message).toMatch(/gpiochip0 gpio-mockup-A/);
    expect(error.hint).toMatch(/gpio\.chip/);
  });

  it.skipIf(process.getuid?.() === 0)('says which file it may not write and how to fix it', async () => {
    const sysRoot = await fakeSys([{ name: 'gpiochip512', base: 512, ngpio: 58, label: 'pinctrl-bcm2711' }]);
    await chmod(join(sysRoot, 'class/gpio/export'), 0o444);
    await expect(
      resolveLine(17, { sysRoot, devRoot: '/nonexistent', backend: 'auto', listChardev: noChardev }),
    ).rejects.toThrow(/no permission to use .*export/);
  });

  it('a forced sysfs backend on a kernel without it says to use chardev', async () => {
    const error = await outpostFailure(
      resolveLine(17, {
        sysRoot: await tempDir('outpost-sys-'),
        devRoot: await fakeDev(['gpiochip0']),
        backend: 'sysfs',
        listChardev: noChardev,
      }),
    );
    expect(error.hint).toMatch(/chardev/);
  });
});
