// Which GPIO interface to use and where a BCM-numbered pin lives on it. Kernels 6.6+ number sysfs GPIOs
// from a chip base (512 for pinctrl-bcm2711 on a Pi 4; the Pi 5's pinctrl-rp1 base has moved between
// releases), so a BCM number is resolved through /sys/class/gpio/gpiochip*/{base,label,ngpio}, never a
// hard-coded offset. Where sysfs GPIO is absent (CONFIG_GPIO_SYSFS off, as on newer kernels) the GPIO
// character device is used instead: the chip is chosen by its label and the line by its offset, which
// on these chips is the BCM number. `sysRoot`/`devRoot` let tests point at fake trees.
import { constants } from 'node:fs';
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../errors.js';

/** GPIO chips whose line offsets are BCM numbers, in the order they are looked for. */
export const BCM_CHIP_LABELS = ['pinctrl-bcm2711', 'pinctrl-bcm2835', 'pinctrl-rp1'] as const;

export interface GpioRoots {
  /** `/sys` on a real box. */
  sysRoot: string;
  /** `/dev` on a real box. */
  devRoot: string;
}

export interface SysfsChip {
  /** `gpiochip512` */
  name: string;
  base: number;
  ngpio: number;
  label: string;
}

export interface ChardevChip {
  /** `gpiochip0`: the device node's name under devRoot. */
  name: string;
  label: string;
  lines: number;
}

/** Lists the character-device chips with their labels (gpiod-pin.ts asks `gpiodetect`). */
export type ChardevLister = (roots: GpioRoots) => Promise<ChardevChip[]>;

export type ResolvedLine =
  | { backend: 'sysfs'; bcm: number; gpio: number; chip: SysfsChip }
  | { backend: 'chardev'; bcm: number; chipPath: string; chipLabel: string; offset: number };

export interface ResolveOptions extends GpioRoots {
  backend: 'auto' | 'sysfs' | 'chardev';
  /** A chip label to use instead of the first of BCM_CHIP_LABELS found. */
  chip?: string | undefined;
  listChardev: ChardevLister;
}

const GROUP_FIX =
  'add the outpost user to the gpio group (usermod -aG gpio outpost; outpost.service has SupplementaryGroups=gpio) and restart';

/** The chips under /sys/class/gpio, or undefined when sysfs GPIO is not there at all. */
export async function readSysfsChips(sysRoot: string): Promise<SysfsChip[] | undefined> {
  const dir = join(sysRoot, 'class/gpio');
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return undefined;
  }
  const chips: SysfsChip[] = [];
  for (const name of entries.filter((entry) => /^gpiochip\d+$/.test(entry)).sort()) {
    const read = async (file: string) => (await readFile(join(dir, name, file), 'utf8')).trim();
    try {
      chips.push({
        name,
        base: Number(await read('base')),
        ngpio: Number(await read('ngpio')),
        label: await read('label'),
      });
    } catch {
      // A chip directory without its attributes is not one we can use; skip it.
    }
  }
  return chips;
}

/** Where BCM GPIO `bcm` is, on the backend `options.backend` asks for or the one this box has. */
export async function resolveLine(bcm: number, options: ResolveOptions): Promise<ResolvedLine> {
  const sysfs = options.backend === 'chardev' ? undefined : await readSysfsChips(options.sysRoot);
  if (sysfs === undefined) return resolveChardev(bcm, options);
  try {
    return await resolveSysfs(bcm, sysfs, options);
  } catch (error) {
    // auto: sysfs GPIO that is there but cannot be used (read-only /sys under systemd's
    // ProtectKernelTunables, as in outpost.service; no permission) falls back to the character device.
    if (options.backend === 'sysfs' || (await chardevNodes(options.devRoot)).length === 0) throw error;
    return resolveChardev(bcm, options);
  }
}

async function resolveSysfs(bcm: number, sysfs: SysfsChip[], options: ResolveOptions): Promise<ResolvedLine> {
  const labels = options.chip ? [options.chip] : [...BCM_CHIP_LABELS];
  const chip = labels.map((label) => sysfs.find((found) => found.label === label)).find(Boolean);
  if (!chip) {
    throw new OutpostError(
      'GPIO_UNAVAILABLE',
      `no GPIO chip labelled ${labels.join(' or ')} under ${join(options.sysRoot, 'class/gpio')} (found: ${sysfs.map((c) => `${c.name} ${c.label}`).join(', ') || 'none'})`,
      { hint: 'set gpio.chip to the label of the chip your button is wired to' },
    );
  }
  if (bcm >= chip.ngpio) {
    throw new OutpostError('GPIO_UNAVAILABLE', `GPIO${bcm} is beyond ${chip.label}'s ${chip.ngpio} lines`, {
      hint: 'check gpio.button.pin / gpio.led.pin (BCM numbers)',
    });
  }
  const exportFile = join(options.sysRoot, 'class/gpio/export');
  await accessible(exportFile, constants.W_OK);
  return { backend: 'sysfs', bcm, gpio: chip.base + bcm, chip };
}

async function chardevNodes(devRoot: string): Promise<string[]> {
  try {
    return (await readdir(devRoot)).filter((entry) => /^gpiochip\d+$/.test(entry));
  } catch {
    return [];
  }
}

async function resolveChardev(bcm: number, options: ResolveOptions): Promise<ResolvedLine> {
  const labels = options.chip ? [options.chip] : [...BCM_CHIP_LABELS];
  if (options.backend === 'sysfs') {
    throw new OutpostError(
      'GPIO_UNAVAILABLE',
      `gpio.backend is sysfs but ${join(options.sysRoot, 'class/gpio')} does not exist`,
      {
        hint: 'this kernel has no sysfs GPIO (CONFIG_GPIO_SYSFS); set gpio.backend: auto or chardev',
      },
    );
  }
  const nodes = await chardevNodes(options.devRoot);
  if (nodes.length === 0) {
    throw new OutpostError(
      'GPIO_UNAVAILABLE',
      `no GPIO interface: neither ${join(options.sysRoot, 'class/gpio')} nor ${join(options.devRoot, 'gpiochip*')} exists`,
      {
        hint: 'is this a Raspberry Pi with GPIO enabled? remove the gpio section from the config on a box without one',
      },
    );
  }
  const chips = await options.listChardev(options);
  const chip = labels
    .map((label) => chips.find((found) => found.label === label && nodes.includes(found.name)))
    .find(Boolean);
  if (!chip) {
    throw new OutpostError(
      'GPIO_UNAVAILABLE',
      `no GPIO chip labelled ${labels.join(' or ')} among ${chips.map((c) => `${c.name} [${c.label}]`).join(', ') || nodes.join(', ')}`,
      { hint: 'set gpio.chip to the label gpiodetect shows for the chip your button is wired to' },
    );
  }
  if (bcm >= chip.lines) {
    throw new OutpostError('GPIO_UNAVAILABLE', `GPIO${bcm} is beyond ${chip.label}'s ${chip.lines} lines`, {
      hint: 'check gpio.button.pin / gpio.led.pin (BCM numbers)',
    });
  }
  const chipPath = join(options.devRoot, chip.name);
  await accessible(chipPath, constants.R_OK | constants.W_OK);
  return { backend: 'chardev', bcm, chipPath, chipLabel: chip.label, offset: bcm };
}

async function accessible(path: string, mode: number): Promise<void> {
  try {
    await access(path, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new OutpostError(
      'GPIO_UNAVAILABLE',
      code === 'EACCES' || code === 'EPERM'
        ? `no permission to use ${path}`
        : `${path} cannot be used: ${code ?? String(error)}`,
      { hint: GROUP_FIX, cause: error },
    );
  }
}
