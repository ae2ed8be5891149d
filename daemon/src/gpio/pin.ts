// The one narrow interface every GPIO line is used through: the shape of onoff's Gpio (read, write,
// watch edges, close), so the sysfs backend (onoff-pin.ts), the character-device backend (gpiod-pin.ts)
// and the test double (fake-pin.ts) are interchangeable. Values are raw line levels (0 = low); the
// button and the LED apply active-low themselves, identically on every backend.

export type PinValue = 0 | 1;
export type Edge = 'none' | 'rising' | 'falling' | 'both';
export type WatchCallback = (error: Error | null | undefined, value: PinValue) => void;

export interface Pin {
  /** For logs and errors: `GPIO17 (sysfs gpio529)`, `GPIO17 (pinctrl-bcm2711 line 17)`. */
  readonly description: string;
  /** The line's level now. */
  read(): Promise<PinValue>;
  /** Drive an output line. */
  write(value: PinValue): Promise<void>;
  /** Called on every edge the line was opened for, with the level after it. */
  watch(callback: WatchCallback): void;
  unwatchAll(): void;
  /** Release the line. Idempotent. */
  close(): Promise<void>;
}

export interface PinRequest {
  direction: 'in' | 'out';
  /** Inputs: which edges to report. */
  edge?: Edge;
  /** chardev inputs: bias to set on the line (sysfs cannot set one). */
  bias?: 'as-is' | 'pull-up' | 'pull-down' | 'disable';
}
