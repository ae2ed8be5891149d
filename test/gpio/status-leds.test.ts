// The status LED's patterns for first boot's refusals and for updates (docs/leds.md), against the fake
// pin: what each one looks like, that they differ, which one a state asks for, and the board LED that
// blinks them on a box that has no configuration yet.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakePin } from '../../daemon/src/gpio/fake-pin.js';
import { openLedClassPin } from '../../daemon/src/gpio/led-class-pin.js';
import { firstbootLed, Led, LED_PATTERNS, type LedBase } from '../../daemon/src/gpio/led.js';
import type { PinValue } from '../../daemon/src/gpio/pin.js';
import { UpdateReport } from '../../daemon/src/update/report.js';
import { BOX_PATHS, type UpdateState } from '../../daemon/src/update/state.js';
import { REPO } from '../support/processes.js';

const log = pino({ level: 'silent' });

/** A fake pin that also notes when each level was driven. */
class TimedPin extends FakePin {
  readonly timeline: Array<[number, PinValue]> = [];
  override write(value: PinValue): Promise<void> {
    this.timeline.push([Date.now(), value]);
    return super.write(value);
  }
}

/** Play `pattern` for one cycle and return its lit spans, in ms. */
async function litSpans(pattern: LedBase): Promise<number[]> {
  const pin = new TimedPin();
  const led = new Led({ open: () => Promise.resolve(pin), activeLow: false, baseState: () => pattern, log });
  await led.start();
  const cycle = LED_PATTERNS[pattern].reduce((sum, [, ms]) => sum + ms, 0);
  await vi.advanceTimersByTimeAsync(cycle * 2);
  await led.stop();
  const spans: number[] = [];
  for (let i = 0; i < pin.timeline.length - 1; i++) {
    const [at, value] = pin.timeline[i] ?? [0, 0];
    if (value === 1) spans.push((pin.timeline[i + 1]?.[0] ?? at) - at);
  }
  return spans.slice(0, LED_PATTERNS[pattern].filter(([lit]) => lit).length);
}

describe('status LED patterns for first boot and updates', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it.each([10, 11, 12, 13, 14, 15])(
    'first boot refusing with exit %i: one 1.5 s flash, then exit − 9 short blinks',
    async (status) => {
      const pattern = firstbootLed(status);
      expect(pattern).toBe(`firstboot-refused-${status}`);
      expect(await litSpans(pattern!)).toEqual([1500, ...Array.from({ length: status - 9 }, () => 200)]);
    },
  );

  it('has no pattern for exit statuses that are not refusals', () => {
    expect([0, 1, 2, 9, 16].map(firstbootLed)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('update patterns look like docs/leds.md says, and no two patterns look alike', async () => {
    expect(await litSpans('update-receiving')).toEqual([500]);
    expect(await litSpans('update-installing')).toEqual([150]);
    expect(await litSpans('update-committed')).toEqual([100, 100, 100, 1500]);
    expect(await litSpans('update-refused')).toEqual([1500, 1500]);
    expect(await litSpans('update-rolled-back')).toEqual([1500, 1500, 1500]);
    const shapes = Object.values(LED_PATTERNS).map((steps) => JSON.stringify(steps));
    expect(new Set(shapes).size).toBe(shapes.length);
  });
});

describe('which pattern the update report asks for', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-leds-'));
    await mkdir(join(dir, 'update'), { recursive: true });
    await writeFile(join(dir, 'cmdline'), 'rauc.slot=B\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function ask(state: Partial<UpdateState> | undefined, now = Date.now()) {
    const paths = {
      ...BOX_PATHS,
      updateDir: join(dir, 'update'),
      cmdline: join(dir, 'cmdline'),
      healthFile: '',
      firstbootResult: join(dir, 'firstboot.json'),
    };
    if (state) {
      await writeFile(
        join(dir, 'update/state.json'),
        JSON.stringify({
          phase: 'idle',
          since: now,
          from: { version: '1.0.0', slot: 'A' },
          target: { version: '2.0.0', slot: 'B' },
          progress: null,
          reason: null,
          code: null,
          ...state,
        }),
      );
    }
    const published: unknown[] = [];
    const report = new UpdateReport({
      site: 's',
      device: 'd',
      version: '2.0.0',
      publisher: { publish: (_topic, payload) => published.push(payload) },
      stamp: () => ({ at: now, bootId: 'boot-0001', seq: 1 }),
      paths,
      healthy: () => true,
      unhealthy: () => [],
      log,
      now: () => now,
    });
    await report.start();
    await report.stop();
    return { led: report.led(), published };
  }

  it('follows the updater: installing, committed for a minute, refused and rolled back for ten', async () => {
    const now = Date.now();
    expect((await ask(undefined)).led).toBeUndefined();
    expect((await ask({ phase: 'installing' })).led).toBe('update-installing');
    expect((await ask({ phase: 'rebooting' })).led).toBe('update-installing');
    expect((await ask({ phase: 'trial' })).led).toBe('update-installing');
    expect((await ask({ phase: 'committed', since: now - 30_000 }, now)).led).toBe('update-committed');
    expect((await ask({ phase: 'committed', since: now - 90_000 }, now)).led).toBeUndefined();
    expect((await ask({ phase: 'refused', since: now - 60_000 }, now)).led).toBe('update-refused');
    expect((await ask({ phase: 'failed', since: now - 60_000 }, now)).led).toBe('update-refused');
    expect((await ask({ phase: 'rolled-back', since: now - 60_000 }, now)).led).toBe('update-rolled-back');
    expect((await ask({ phase: 'rolled-back', since: now - 700_000 }, now)).led).toBeUndefined();
    const { published } = await ask({
      phase: 'refused',
      code: 'UPDATE_SIGNATURE_INVALID',
      reason: 'tampered',
    });
    expect(published.at(-1)).toMatchObject({
      state: 'refused',
      code: 'UPDATE_SIGNATURE_INVALID',
      reason: 'tampered',
    });
  });

  it("blinks first boot's refusal for a quarter of an hour", async () => {
    const now = Date.now();
    await writeFile(
      join(dir, 'firstboot.json'),
      JSON.stringify({ exit: 12, code: 'BUNDLE_UNTRUSTED', at: now - 60_000 }),
    );
    expect((await ask(undefined, now)).led).toBe('firstboot-refused-12');
    expect((await ask(undefined, now + 15 * 60_000)).led).toBeUndefined();
  });
});

describe('the board LED (a box without a configuration)', () => {
  it('takes the LED from its trigger, drives its brightness, and gives it back', async () => {
    const root = await mkdtemp(join(tmpdir(), 'outpost-sysfs-leds-'));
    try {
      await mkdir(join(root, 'ACT'));
      await writeFile(join(root, 'ACT/trigger'), 'none [mmc0] heartbeat');
      await writeFile(join(root, 'ACT/max_brightness'), '255');
      await writeFile(join(root, 'ACT/brightness'), '0');
      const pin = await openLedClassPin(undefined, root);
      expect(pin.description).toBe(`LED ACT (${join(root, 'ACT')})`);
      expect(await readFile(join(root, 'ACT/trigger'), 'utf8')).toBe('none');
      await pin.write(1);
      expect(await readFile(join(root, 'ACT/brightness'), 'utf8')).toBe('255');
      await pin.write(0);
      expect(await readFile(join(root, 'ACT/brightness'), 'utf8')).toBe('0');
      await pin.close();
      expect(await readFile(join(root, 'ACT/trigger'), 'utf8')).toBe('mmc0');
      await expect(openLedClassPin(['nope'], root)).rejects.toThrow(/no board LED: none of nope/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('docs/leds.md', () => {
  it('documents every pattern', async () => {
    const text = await readFile(join(REPO, 'docs/leds.md'), 'utf8');
    for (const pattern of Object.keys(LED_PATTERNS)) expect(text).toContain(`\`${pattern}\``);
  });
});
