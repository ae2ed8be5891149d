// `outpost led …`: play a status LED pattern outside the daemon (docs/leds.md). `led firstboot` is what
// outpost-firstboot-led.service runs when first boot refused the bundle of a box that has no
// configuration yet (so no daemon to blink): it reads first boot's result and blinks its pattern on the
// configured GPIO LED, else on the board's activity LED, until stopped. `led show` plays any pattern
// (to check an LED's wiring, or learn the patterns).
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import { describeError, ExitCode } from '../errors.js';
import type { CommandShell } from '../lifecycle/shell.js';
import { createLogger } from '../log.js';
import { firstbootLed, Led, LED_PATTERNS, type LedBase } from './led.js';
import { openLedClassPin } from './led-class-pin.js';
import { pinOpener } from './open-pin.js';
import type { Pin } from './pin.js';

export const FIRSTBOOT_RESULT_FILE = '/run/outpost-firstboot/result.json';

interface LedOptions {
  config?: string;
  leds?: string;
  seconds?: number;
}

/** The configured GPIO LED when the config loads and names one, else the board's LED. */
async function openAnyLed(options: LedOptions): Promise<{ open: () => Promise<Pin>; activeLow: boolean }> {
  const config = await loadConfig(options.config ?? DEFAULT_CONFIG_PATH).catch(() => undefined);
  const led = config?.gpio?.led;
  if (config?.gpio && led) {
    const opener = pinOpener(config.gpio);
    return { open: () => opener(led.pin, { direction: 'out' }), activeLow: led.activeLow };
  }
  return { open: () => openLedClassPin(undefined, options.leds), activeLow: false };
}

async function play(pattern: LedBase, options: LedOptions, shell: CommandShell): Promise<void> {
  const log = createLogger('info');
  const { open, activeLow } = await openAnyLed(options);
  const led = new Led({ open, activeLow, baseState: () => pattern, log: log.child({ service: 'led' }) });
  await led.start();
  if (led.broken()) {
    shell.setExitCode(ExitCode.START_FAILED);
    return;
  }
  log.info({ event: 'led', pattern }, `showing ${pattern} on the status LED`);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    shell.untilSignal(),
    ...(options.seconds
      ? [new Promise<void>((resolve) => (timer = setTimeout(resolve, (options.seconds ?? 0) * 1000)))]
      : []),
  ]);
  clearTimeout(timer);
  await led.stop();
}

function seconds(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new InvalidArgumentError('give a number of seconds > 0');
  return number;
}

export function registerLedCommands(cli: Command, shell: CommandShell): void {
  const led = cli.command('led').description('show a status LED pattern (docs/leds.md)');
  const common = (command: Command): Command =>
    command
      .option('-c, --config <file>', `the config naming gpio.led (default: ${DEFAULT_CONFIG_PATH})`)
      .option('--leds <dir>', 'where LED class devices are, for the board LED', '/sys/class/leds')
      .option('--seconds <n>', 'stop after this long (default: until SIGTERM)', seconds);
  common(
    led
      .command('show')
      .description('play a pattern')
      .argument('<pattern>', `one of: ${Object.keys(LED_PATTERNS).join(', ')}`),
  ).action(async (pattern: string, options: LedOptions) => {
    if (!Object.hasOwn(LED_PATTERNS, pattern)) {
      process.stderr.write(
        `outpost led: no pattern ${pattern}; patterns: ${Object.keys(LED_PATTERNS).join(', ')}\n`,
      );
      shell.setExitCode(ExitCode.CONFIG);
      return;
    }
    await play(pattern as LedBase, options, shell);
  });
  common(
    led
      .command('firstboot')
      .description('blink why first boot refused the bundle (outpost-firstboot-led.service)')
      .option('--result <file>', "first boot's result", FIRSTBOOT_RESULT_FILE),
  ).action(async (options: LedOptions & { result: string }) => {
    let status: number;
    try {
      status = (JSON.parse(await readFile(options.result, 'utf8')) as { exit: number }).exit;
    } catch (error) {
      process.stderr.write(`outpost led firstboot: no first boot result: ${describeError(error)}\n`);
      shell.setExitCode(ExitCode.CONFIG);
      return;
    }
    const pattern = firstbootLed(status);
    if (!pattern) {
      process.stderr.write(`outpost led firstboot: exit status ${status} has no pattern (10–15 have)\n`);
      return;
    }
    await play(pattern, options, shell);
  });
}
