// The status LED: one pattern at a time, so a field tech can read the box without a screen.
//   idle            short blink every 2 s (running, no camera streaming)
//   streaming       steady on
//   fault           double blink every 2 s (a subsystem is unhealthy)
//   alert-sent      fast blink for 3 s after a panic alert was published, then back
//   clip-delivered  three long blinks when a clip reached the hub, then back
// and the patterns of first boot and of updates (docs/leds.md has the table, with each one's journal
// line): a 1.5 s flash then 1–6 short blinks for first boot's refusals (exit 10–15); for updates,
// receiving, installing, committed, refused and rolled back.
// The steady states come from `baseState()`, asked at the end of every cycle; the two event patterns
// play once over it. Without a configured LED every call is a no-op.
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import type { Pin, PinValue } from './pin.js';

/** First boot refused its bundle with exit status 10–15 (docs/provisioning.md). */
export type FirstbootLed = `firstboot-refused-${10 | 11 | 12 | 13 | 14 | 15}`;
/** Where an update is (docs/updates.md). */
export type UpdateLed =
  'update-receiving' | 'update-installing' | 'update-committed' | 'update-refused' | 'update-rolled-back';
export type LedBase = 'idle' | 'streaming' | 'fault' | FirstbootLed | UpdateLed;
export type LedEvent = 'alert-sent' | 'clip-delivered';
export type LedPattern = LedBase | LedEvent;

type Steps = ReadonlyArray<readonly [boolean, number]>;
const times = (count: number, steps: Steps): Steps => Array.from({ length: count }, () => steps).flat();
/** One 1.5 s flash, then `count` short blinks, then dark: "a problem, number `count`". */
const flashThen = (count: number): Steps => [
  [true, 1500],
  [false, 600],
  ...times(count, [
    [true, 200],
    [false, 400],
  ]),
  [false, 2000],
];
/** `count` long flashes, then dark. */
const longFlashes = (count: number): Steps => [
  ...times(count, [
    [true, 1500],
    [false, 500],
  ]),
  [false, 2000],
];

/** The LED pattern for first boot's exit status, when it is a refusal (10–15). */
export function firstbootLed(status: number): FirstbootLed | undefined {
  return Number.isInteger(status) && status >= 10 && status <= 15
    ? (`firstboot-refused-${status}` as FirstbootLed)
    : undefined;
}

/** [lit, milliseconds] steps of one cycle. */
export const LED_PATTERNS: Record<LedPattern, Steps> = {
  idle: [
    [true, 100],
    [false, 1900],
  ],
  streaming: [[true, 1000]],
  fault: [
    [true, 150],
    [false, 150],
    [true, 150],
    [false, 1550],
  ],
  'alert-sent': Array.from({ length: 15 }, () => [[true, 100] as const, [false, 100] as const]).flat(),
  'clip-delivered': Array.from({ length: 3 }, () => [[true, 600] as const, [false, 300] as const]).flat(),
  'firstboot-refused-10': flashThen(1),
  'firstboot-refused-11': flashThen(2),
  'firstboot-refused-12': flashThen(3),
  'firstboot-refused-13': flashThen(4),
  'firstboot-refused-14': flashThen(5),
  'firstboot-refused-15': flashThen(6),
  'update-receiving': [
    [true, 500],
    [false, 500],
  ],
  'update-installing': [
    [true, 150],
    [false, 150],
  ],
  'update-committed': [
    ...times(3, [
      [true, 100],
      [false, 100],
    ]),
    [true, 1500],
    [false, 1000],
  ],
  'update-refused': longFlashes(2),
  'update-rolled-back': longFlashes(3),
};

export interface LedDeps {
  /** Opens the LED's line; undefined: no LED configured, and every call is a no-op. */
  open?: () => Promise<Pin>;
  activeLow: boolean;
  /** The steady pattern (idle, streaming, fault), asked at the end of every cycle. */
  baseState: () => LedBase;
  log: Logger;
}

export class Led implements Service {
  readonly name = 'led';
  private pin: Pin | undefined;
  private timer: NodeJS.Timeout | undefined;
  private playing: LedPattern | undefined;
  private readonly queue: LedEvent[] = [];
  private lit: boolean | undefined;
  private failed = false;

  constructor(private readonly deps: LedDeps) {}

  /** The pattern showing now (undefined without an LED or before start). */
  current(): LedPattern | undefined {
    return this.playing;
  }

  async start(): Promise<void> {
    if (!this.deps.open || this.pin) return;
    try {
      this.pin = await this.deps.open();
    } catch (error) {
      this.failed = true;
      this.deps.log.error({ err: error, reason: describeError(error) }, 'status LED unavailable');
      return;
    }
    this.cycle();
  }

  /** Play an event pattern once, then return to the steady state. */
  show(event: LedEvent): void {
    if (!this.pin) return;
    if (this.queue.length < 4) this.queue.push(event);
    if (this.playing !== 'alert-sent' && this.playing !== 'clip-delivered') {
      clearTimeout(this.timer);
      this.cycle();
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const pin = this.pin;
    this.pin = undefined;
    this.playing = undefined;
    if (pin) {
      await this.set(pin, false);
      await pin.close();
    }
  }

  /** Always true: a dark LED is logged, not a reason to restart the daemon. */
  healthy(): boolean {
    return true;
  }

  /** The LED could not be opened or driven. */
  broken(): boolean {
    return this.failed;
  }

  private cycle(): void {
    const pin = this.pin;
    if (!pin) return;
    const pattern = this.queue.shift() ?? this.deps.baseState();
    this.playing = pattern;
    const steps = LED_PATTERNS[pattern];
    const step = (index: number) => {
      if (this.pin !== pin) return;
      const current = steps[index];
      if (!current) {
        this.cycle();
        return;
      }
      void this.set(pin, current[0]);
      this.timer = setTimeout(() => step(index + 1), current[1]);
    };
    step(0);
  }

  private async set(pin: Pin, lit: boolean): Promise<void> {
    if (this.lit === lit) return;
    this.lit = lit;
    const value: PinValue = lit !== this.deps.activeLow ? 1 : 0;
    try {
      await pin.write(value);
    } catch (error) {
      if (!this.failed)
        this.deps.log.error({ err: error, pin: pin.description }, 'status LED cannot be driven');
      this.failed = true;
    }
  }
}
