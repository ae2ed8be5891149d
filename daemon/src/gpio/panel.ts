// The box's front panel, from config.gpio: the status LED and the panic button, each on a line that
// open-pin.ts opens. Without a configured LED the LED is a no-op; without a button there is none.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { Button } from './button.js';
import { Led, type LedBase } from './led.js';
import type { PinOpener } from './open-pin.js';

type Gpio = Config['gpio'];

/** What the LED shows between events: `fault` when something is wrong, `streaming` while a camera streams. */
export function ledBase(state: { healthy: boolean; buttonProblem: boolean; streaming: boolean }): LedBase {
  if (!state.healthy || state.buttonProblem) return 'fault';
  return state.streaming ? 'streaming' : 'idle';
}

export function statusLed(deps: {
  gpio: Gpio;
  openPin: PinOpener | undefined;
  baseState: () => LedBase;
  log: Logger;
}): Led {
  const led = deps.gpio?.led;
  const openPin = deps.openPin;
  return new Led({
    open: openPin && led ? () => openPin(led.pin, { direction: 'out' }) : undefined,
    activeLow: led?.activeLow ?? false,
    baseState: deps.baseState,
    log: deps.log,
  });
}

/** The button, when one is configured: a press (or a long press) raises a panic as config says. */
export function panicButton(deps: {
  gpio: Gpio;
  openPin: PinOpener | undefined;
  panic: (at: number) => void;
  log: Logger;
}): Button | undefined {
  const button = deps.gpio?.button;
  const openPin = deps.openPin;
  if (!button || !openPin) return undefined;
  return new Button({
    open: () => openPin(button.pin, { direction: 'in', edge: 'both', bias: button.bias }),
    options: button,
    handlers: {
      press: (at) => {
        if (button.onPress === 'panic') deps.panic(at);
      },
      longPress: (at) => {
        if (button.onLongPress === 'panic') deps.panic(at);
      },
    },
    log: deps.log,
  });
}
