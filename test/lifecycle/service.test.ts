import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { lifecycle, type Service } from '../../daemon/src/lifecycle/service.js';

const log = pino({ level: 'silent' });

/** A subsystem that records what happened to it, in the order it happened. */
function recorder(
  events: string[],
  name: string,
  behaviour: { failStart?: boolean; hangStop?: boolean } = {},
): Service {
  return {
    name,
    start() {
      events.push(`start ${name}`);
      return behaviour.failStart ? Promise.reject(new Error('port taken')) : Promise.resolve();
    },
    stop() {
      events.push(`stop ${name}`);
      return behaviour.hangStop ? new Promise<void>(() => {}) : Promise.resolve();
    },
    healthy: () => true,
  };
}

describe('lifecycle', () => {
  it('starts in order and stops in reverse order', async () => {
    const events: string[] = [];
    const life = lifecycle([recorder(events, 'a'), recorder(events, 'b'), recorder(events, 'c')], log, 1000);
    await life.start();
    expect(life.healthy()).toBe(true);
    expect(await life.stop()).toBe(true);
    expect(events).toEqual(['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a']);
  });

  it('a subsystem that fails to start is named, and the ones already started are stopped', async () => {
    const events: string[] = [];
    const life = lifecycle(
      [
        recorder(events, 'a'),
        recorder(events, 'b'),
        recorder(events, 'c', { failStart: true }),
        recorder(events, 'd'),
      ],
      log,
      1000,
    );
    await expect(life.start()).rejects.toThrow('c failed to start: port taken');
    expect(events).toEqual(['start a', 'start b', 'start c', 'stop b', 'stop a']);
    expect(life.healthy()).toBe(false);
  });

  it('a subsystem that does not stop is abandoned within the bound; the others still stop', async () => {
    const events: string[] = [];
    const life = lifecycle([recorder(events, 'a'), recorder(events, 'b', { hangStop: true })], log, 300);
    await life.start();
    const began = Date.now();
    expect(await life.stop()).toBe(false);
    expect(Date.now() - began).toBeLessThan(1000);
    expect(events).toEqual(['start a', 'start b', 'stop b', 'stop a']);
  });

  it('stop is idempotent', async () => {
    const events: string[] = [];
    const life = lifecycle([recorder(events, 'a')], log, 1000);
    await life.start();
    await Promise.all([life.stop(), life.stop()]);
    expect(await life.stop()).toBe(true);
    expect(events).toEqual(['start a', 'stop a']);
  });
});
