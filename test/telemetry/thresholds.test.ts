import { describe, expect, it } from 'vitest';
import { alertPayload, type TelemetryPayload } from '../../daemon/src/mqtt/contract.js';
import type { Stamper } from '../../daemon/src/mqtt/publisher.js';
import { DEFAULT_THRESHOLDS, Thresholds } from '../../daemon/src/telemetry/thresholds.js';

const GB = 1024 ** 3;

function stamper(): Stamper {
  let seq = 0;
  return () => ({ at: Date.now(), bootId: 'boot-0123456789', seq: seq++ });
}

/** A healthy sample; `over` changes the parts a test is about. */
function sample(over: { temperatureC?: number | null; diskPercent?: number; memoryPercent?: number }) {
  const payload: TelemetryPayload = {
    at: Date.now(),
    bootId: 'boot-0123456789',
    seq: 0,
    cpuLoadPercent: 12,
    temperatureC: over.temperatureC === undefined ? 50 : over.temperatureC,
    memory: { usedBytes: Math.round(((over.memoryPercent ?? 40) / 100) * 4 * GB), totalBytes: 4 * GB },
    disk: {
      path: '/var/lib/outpost',
      usedBytes: Math.round(((over.diskPercent ?? 30) / 100) * 32 * GB),
      totalBytes: 32 * GB,
    },
    uptimeSeconds: 100,
    network: [],
    throttled: null,
  };
  return payload;
}

describe('threshold alerts', () => {
  it('a temperature oscillating around the raise level raises exactly once and clears exactly once', () => {
    const thresholds = new Thresholds({ device: 'cam-north', stamp: stamper() });
    const temperatures = [70, 79.9, 80, 79, 81, 76, 80.5, 75, 78, 74.9, 76, 79.9, 70];
    const alerts = temperatures.flatMap((temperatureC) => thresholds.evaluate(sample({ temperatureC })));
    expect(alerts.map((alert) => [alert.kind, alert.state])).toEqual([
      ['temperature', 'raised'],
      ['temperature', 'cleared'],
    ]);
    for (const alert of alerts) expect(alertPayload.parse(alert)).toEqual(alert);
    const [raised, cleared] = alerts;
    expect(raised?.severity).toBe('warning');
    expect(cleared?.severity).toBe('info');
    // The clear names the raise it ends.
    expect(cleared?.id).toBe(raised?.id);
    expect(raised?.message).toContain('80.0 °C');
    expect(thresholds.active()).toEqual([]);
  });

  it('memory hovering between the clear and raise levels stays raised without repeating', () => {
    const thresholds = new Thresholds({ device: 'cam-north', stamp: stamper() });
    const levels = [50, 90, 89, 86, 85, 89.9, 91, 95, 84.9, 89];
    const alerts = levels.flatMap((memoryPercent) => thresholds.evaluate(sample({ memoryPercent })));
    expect(alerts.map((alert) => `${alert.kind} ${alert.state}`)).toEqual([
      'memory raised',
      'memory cleared',
    ]);
    for (const alert of alerts) alertPayload.parse(alert);
  });

  it('a filling disk raises a warning at 90 %, escalates once to critical at 97 %, and clears below 85 %', () => {
    const thresholds = new Thresholds({ device: 'cam-north', stamp: stamper() });
    const levels = [80, 90.5, 92, 97, 99, 96, 98, 88, 84];
    const alerts = levels.flatMap((diskPercent) => thresholds.evaluate(sample({ diskPercent })));
    expect(alerts.map((alert) => `${alert.kind} ${alert.state} ${alert.severity}`)).toEqual([
      'disk raised warning',
      'disk raised critical',
      'disk cleared info',
    ]);
    expect(new Set(alerts.map((alert) => alert.id)).size).toBe(1);
    for (const alert of alerts) alertPayload.parse(alert);
    expect(alerts[0]?.message).toContain('/var/lib/outpost');
  });

  it('a disk found already past 97 % is raised critical straight away', () => {
    const thresholds = new Thresholds({ device: 'cam-north', stamp: stamper() });
    const alerts = thresholds.evaluate(sample({ diskPercent: 98 }));
    expect(alerts.map((alert) => alert.severity)).toEqual(['critical']);
  });

  it('an unknown temperature neither raises nor clears', () => {
    const thresholds = new Thresholds({ device: 'cam-north', stamp: stamper() });
    expect(thresholds.evaluate(sample({ temperatureC: 85 }))).toHaveLength(1);
    expect(thresholds.evaluate(sample({ temperatureC: null }))).toEqual([]);
    expect(thresholds.active()).toEqual(['temperature']);
  });

  it('each kind is tracked on its own, and every message is stamped afresh', () => {
    const thresholds = new Thresholds({ device: 'cam-north', stamp: stamper() });
    const alerts = thresholds.evaluate(sample({ temperatureC: 82, diskPercent: 91, memoryPercent: 93 }));
    expect(alerts.map((alert) => alert.kind)).toEqual(['temperature', 'disk', 'memory']);
    expect(alerts.map((alert) => alert.seq)).toEqual([0, 1, 2]);
    expect(new Set(alerts.map((alert) => alert.id)).size).toBe(3);
  });

  it('limits can be changed, and a clear level above the raise level is refused', () => {
    const thresholds = new Thresholds({
      device: 'cam-north',
      stamp: stamper(),
      limits: { ...DEFAULT_THRESHOLDS, temperatureC: { raiseAt: 60, clearBelow: 55 } },
    });
    expect(thresholds.evaluate(sample({ temperatureC: 61 })).map((alert) => alert.kind)).toEqual([
      'temperature',
    ]);
    expect(
      () =>
        new Thresholds({
          device: 'cam-north',
          stamp: stamper(),
          limits: { ...DEFAULT_THRESHOLDS, memoryPercent: { raiseAt: 80, clearBelow: 85 } },
        }),
    ).toThrow('thresholds.memoryPercent: clearBelow (85) must be at or below raiseAt (80)');
  });
});
