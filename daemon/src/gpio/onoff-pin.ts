// The sysfs GPIO backend: onoff's Gpio, the only module that imports onoff. onoff (and its native epoll
// addon) is loaded on first use, so a box without a button never loads it. sysfs cannot set a pull-up:
// wire one, or set it in config.txt (`gpio=17=ip,pu`).
import { join } from 'node:path';
import { OutpostError } from '../errors.js';
import type { ResolvedLine } from './chips.js';
import type { Pin, PinRequest, PinValue, WatchCallback } from './pin.js';

type SysfsLine = Extract<ResolvedLine, { backend: 'sysfs' }>;

export async function openOnoffPin(line: SysfsLine, request: PinRequest, sysRoot = '/sys'): Promise<Pin> {
  const { Gpio } = await import('onoff');
  const description = `GPIO${line.bcm} (sysfs gpio${line.gpio} on ${line.chip.label})`;
  let gpio: InstanceType<typeof Gpio>;
  try {
    gpio = new Gpio(line.gpio, request.direction === 'out' ? 'low' : 'in', request.edge ?? 'none');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new OutpostError(
      'GPIO_UNAVAILABLE',
      `cannot open ${description} through ${join(sysRoot, 'class/gpio')}: ${code ?? (error as Error).message}`,
      {
        hint:
          code === 'EACCES' || code === 'EPERM'
            ? 'add the outpost user to the gpio group (usermod -aG gpio outpost) and restart'
            : code === 'EBUSY'
              ? 'another program holds this GPIO; check gpio.button.pin / gpio.led.pin'
              : 'check the pin number and that GPIO is enabled',
        cause: error,
      },
    );
  }
  let closed = false;
  return {
    description,
    read: () => gpio.read(),
    write: (value: PinValue) => gpio.write(value),
    watch: (callback: WatchCallback) => gpio.watch(callback),
    unwatchAll: () => gpio.unwatchAll(),
    close() {
      // unexport exactly once: a second unexport of a released line throws.
      if (!closed) {
        closed = true;
        gpio.unwatchAll();
        gpio.unexport();
      }
      return Promise.resolve();
    },
  };
}
