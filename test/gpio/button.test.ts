// The panic button and the status LED against the fake pin: debouncing with a timer and a re-read,
// press versus long press, and the LED patterns.
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Button } from '../../daemon/src/gpio/button.js';
import { FakePin } from '../../daemon/src/gpio/fake-pin.js';
import { Led, LED_PATTERNS, type LedBase } from '../../daemon/src/gpio/led.js';

const log = pino({ level: 'silent' });

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

async function button(pin: FakePin, longPressMs = 2000) {
  const events: string[] = [];
  const b = new Button({
    open: () => Promise.resolve(pin),
    options: { activeLow: true, debounceMs: 20, longPressMs },
    handlers: {
      press: () => events.push('press'),
      longPress: () => events.push('long'),
      release: (_held, long) => events.push(long ? 'release-long' : 'release'),
    },
    log,
  });
  await b.start();
  return { b, events };
}

type Steps = Array<[level: 0 | 1, ms: number]>;

/** Sets the pin to each level in turn, letting that many ms pass after each. */
async function drive(pin: FakePin, steps: Steps): Promise<void> {
  for (const [level, ms] of steps) {
    pin.set(level);
    await vi.advanceTimersByTimeAsync(ms);
  }
}

describe('panic button', () => {
  it('one press (active low) is one press, reported once the line is quiet, then one release', async () => {
    const pin = new FakePin({ level: 1 });
    const { b, events } = await button(pin);
    pin.set(0);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(25);
    expect(events).toEqual(['press']);
    pin.set(1);
    await vi.advanceTimersByTimeAsync(25);
    expect(events).toEqual(['press', 'release']);
    await b.stop();
    expect(pin.closed).toBe(1);
  });

  it('bounce within the debounce window yields no extra press', async () => {
    const pin = new FakePin({ level: 1 });
    const { events } = await button(pin);
    const chatter = Array.from({ length: 6 }, (): Steps => [
      [0, 3],
      [1, 2],
    ]).flat();
    await drive(pin, [...chatter, [0, 25]]);
    // bounce on release too
    await drive(pin, [
      [1, 2],
      [0, 2],
      [1, 25],
    ]);
    expect(events).toEqual(['press', 'release']);
  });

  it('a glitch shorter than the debounce window that returns to idle is not a press', async () => {
    const pin = new FakePin({ level: 1 });
    const { events } = await button(pin);
    pin.set(0);
    await vi.advanceTimersByTimeAsync(5);
    pin.set(1);
    await vi.advanceTimersByTimeAsync(50);
    expect(events).toEqual([]);
  });

  it('held for longPressMs is a long press, reported while still held', async () => {
    const pin = new FakePin({ level: 1 });
    const { events } = await button(pin, 1000);
    pin.set(0);
    await vi.advanceTimersByTimeAsync(999);
    expect(events).toEqual(['press']);
    await vi.advanceTimersByTimeAsync(5);
    expect(events).toEqual(['press', 'long']);
    pin.set(1);
    await vi.advanceTimersByTimeAsync(25);
    expect(events).toEqual(['press', 'long', 'release-long']);
  });

  it('active high wiring works the same way', async () => {
    const pin = new FakePin({ level: 0 });
    const events: string[] = [];
    const b = new Button({
      open: () => Promise.resolve(pin),
      options: { activeLow: false, debounceMs: 20, longPressMs: 2000 },
      handlers: { press: () => events.push('press') },
      log,
    });
    await b.start();
    pin.set(1);
    await vi.advanceTimersByTimeAsync(25);
    expect(events).toEqual(['press']);
    await b.stop();
  });
});

describe('status LED', () => {
  it('shows the steady state, plays alert-sent once over it, then returns', async () => {
    const pin = new FakePin();
    let base: LedBase = 'streaming';
    const led = new Led({ open: () => Promise.resolve(pin), activeLow: false, baseState: () => base, log });
    await led.start();
    expect(led.current()).toBe('streaming');
    expect(pin.written).toEqual([1]);
    led.show('alert-sent');
    expect(led.current()).toBe('alert-sent');
    const alertMs = LED_PATTERNS['alert-sent'].reduce((sum, [, ms]) => sum + ms, 0);
    await vi.advanceTimersByTimeAsync(alertMs - 10);
    expect(pin.written.length).toBeGreaterThan(20); // fast blink
    base = 'fault';
    await vi.advanceTimersByTimeAsync(20);
    expect(led.current()).toBe('fault');
    await led.stop();
    expect(pin.written.at(-1)).toBe(0);
    expect(pin.closed).toBe(1);
  });

  it('active low inverts the level; no LED configured is fine', async () => {
    const pin = new FakePin();
    const led = new Led({
      open: () => Promise.resolve(pin),
      activeLow: true,
      baseState: () => 'streaming',
      log,
    });
    await led.start();
    expect(pin.written).toEqual([0]);
    await led.stop();
    const none = new Led({ activeLow: false, baseState: () => 'idle', log });
    await none.start();
    none.show('clip-delivered');
    expect(none.current()).toBeUndefined();
    await none.stop();
  });
});
