// Opening a configured pin: resolve the BCM number (chips.ts), then the backend that resolution chose.
import type { Config } from '../config/schema.js';
import { resolveLine, type ChardevLister, type GpioRoots } from './chips.js';
import { listChardevChips, openGpiodPin } from './gpiod-pin.js';
import { openOnoffPin } from './onoff-pin.js';
import type { Pin, PinRequest } from './pin.js';

export interface PinOpener {
  (bcm: number, request: PinRequest): Promise<Pin>;
}

export function pinOpener(
  gpio: NonNullable<Config['gpio']>,
  roots: GpioRoots = { sysRoot: '/sys', devRoot: '/dev' },
  listChardev: ChardevLister = listChardevChips,
): PinOpener {
  return async (bcm, request) => {
    const line = await resolveLine(bcm, { ...roots, backend: gpio.backend, chip: gpio.chip, listChardev });
    return line.backend === 'sysfs'
      ? openOnoffPin(line, request, roots.sysRoot)
      : openGpiodPin(line, request);
  };
}
