// A Pin over a Linux LED class device (/sys/class/leds/NAME: brightness, max_brightness, trigger): the
// board's own activity LED, for a box that has no configuration yet to name a GPIO LED (first boot's
// refusals, docs/leds.md). Opening it sets the trigger to `none` (the kernel stops driving it); closing
// puts the trigger it had back.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../errors.js';
import type { Pin, PinValue } from './pin.js';

/** The board LEDs tried in order: the Pi's activity LED under its upstream and its older name. */
export const BOARD_LEDS = ['ACT', 'led0'] as const;

export async function openLedClassPin(
  names: readonly string[] = BOARD_LEDS,
  root = '/sys/class/leds',
): Promise<Pin> {
  for (const name of names) {
    const dir = join(root, name);
    let triggers: string;
    try {
      triggers = await readFile(join(dir, 'trigger'), 'utf8');
    } catch {
      continue;
    }
    const before = /\[([^\]]+)\]/.exec(triggers)?.[1] ?? 'none';
    const max = Number((await readFile(join(dir, 'max_brightness'), 'utf8').catch(() => '1')).trim()) || 1;
    await writeFile(join(dir, 'trigger'), 'none');
    let level: PinValue = 0;
    let closed = false;
    return {
      description: `LED ${name} (${dir})`,
      read: () => Promise.resolve(level),
      write: async (value) => {
        level = value;
        await writeFile(join(dir, 'brightness'), String(value ? max : 0));
      },
      watch: () => undefined,
      unwatchAll: () => undefined,
      close: async () => {
        if (closed) return;
        closed = true;
        await writeFile(join(dir, 'trigger'), before).catch(() => undefined);
      },
    };
  }
  throw new OutpostError('GPIO_UNAVAILABLE', `no board LED: none of ${names.join(', ')} in ${root}`, {
    hint: 'configure gpio.led (a GPIO LED) in the config',
  });
}
