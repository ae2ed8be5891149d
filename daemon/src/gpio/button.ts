// The panic button: a debounced input with press, long press and release. An edge only starts (or
// restarts) a quiet-time timer; when it fires the pin is read again and only a level that differs from
// the last settled one counts. So a bouncing contact, or noise on a floating line, yields at most one
// press, and the press is reported as soon as the line has been quiet for debounceMs (the alert must not
// wait for the release). `press` carries the time of the first edge, for latency figures.
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import type { Pin, PinValue } from './pin.js';

export interface ButtonOptions {
  activeLow: boolean;
  debounceMs: number;
  longPressMs: number;
}

export interface ButtonHandlers {
  /** The debounced press-down; `at` is the wall time of its first edge. */
  press?(at: number): void;
  /** Still held longPressMs after the press. */
  longPress?(at: number): void;
  /** Let go; `long` when a long press was reported first. */
  release?(heldMs: number, long: boolean): void;
}

export interface ButtonDeps {
  open: () => Promise<Pin>;
  options: ButtonOptions;
  handlers: ButtonHandlers;
  log: Logger;
}

export class Button implements Service {
  readonly name = 'button';
  private pin: Pin | undefined;
  private pressed = false;
  private pressedAt = 0;
  private long = false;
  private firstEdgeAt: number | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private longTimer: NodeJS.Timeout | undefined;
  private fault: string | undefined;

  constructor(private readonly deps: ButtonDeps) {}

  async start(): Promise<void> {
    if (this.pin) return;
    let pin: Pin;
    try {
      pin = await this.deps.open();
    } catch (error) {
      // No GPIO interface or no permission: say so with the fix and keep the daemon (cameras, cmd/clip,
      // `outpost clip`) running; a restart would not fix it.
      this.fault = describeError(error);
      this.deps.log.error(
        { err: error, reason: this.fault },
        'panic button unavailable (cmd/clip and `outpost clip` still work)',
      );
      return;
    }
    this.pin = pin;
    // A button held down at start is not a press: only a change from the settled level counts.
    this.pressed = this.isPressed(await pin.read());
    pin.watch((error, _value) => {
      if (error) {
        if (this.fault === undefined)
          this.deps.log.error({ err: error, pin: pin.description }, 'button pin failed');
        this.fault = error.message;
        return;
      }
      this.firstEdgeAt ??= Date.now();
      clearTimeout(this.debounceTimer);
      this.debounceTimer = setTimeout(() => void this.settle(), this.deps.options.debounceMs);
    });
    this.deps.log.info({ pin: pin.description, ...this.deps.options }, 'panic button ready');
  }

  async stop(): Promise<void> {
    clearTimeout(this.debounceTimer);
    clearTimeout(this.longTimer);
    const pin = this.pin;
    this.pin = undefined;
    await pin?.close();
  }

  /** Always true: a button that cannot be used is logged and shown on the LED, not a restart reason. */
  healthy(): boolean {
    return true;
  }

  /** Why the button does not work, or undefined when it does. */
  problem(): string | undefined {
    return this.fault;
  }

  private isPressed(value: PinValue): boolean {
    return value === (this.deps.options.activeLow ? 0 : 1);
  }

  private async settle(): Promise<void> {
    const pin = this.pin;
    if (!pin) return;
    const edgeAt = this.firstEdgeAt ?? Date.now();
    this.firstEdgeAt = undefined;
    let pressed: boolean;
    try {
      pressed = this.isPressed(await pin.read());
    } catch (error) {
      this.deps.log.error({ err: error, pin: pin.description }, 'button pin cannot be read');
      return;
    }
    if (pressed === this.pressed) return; // a bounce or a glitch that came back: nothing happened
    this.pressed = pressed;
    if (pressed) {
      this.pressedAt = edgeAt;
      this.long = false;
      this.deps.handlers.press?.(edgeAt);
      this.longTimer = setTimeout(
        () => {
          this.long = true;
          this.deps.handlers.longPress?.(edgeAt);
        },
        Math.max(0, this.deps.options.longPressMs - (Date.now() - edgeAt)),
      );
    } else {
      clearTimeout(this.longTimer);
      this.deps.handlers.release?.(Date.now() - this.pressedAt, this.long);
    }
  }
}
