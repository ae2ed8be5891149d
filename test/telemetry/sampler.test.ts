import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertPayload, telemetryPayload } from '../../daemon/src/mqtt/contract.js';
import type { Publisher, PublishOptions, Stamper } from '../../daemon/src/mqtt/publisher.js';
import {
  parseNetDev,
  parseThrottled,
  type Reading,
  Telemetry,
  type TelemetryDeps,
} from '../../daemon/src/telemetry/sampler.js';

interface Published {
  topic: string;
  payload: object;
  options: PublishOptions;
}

/** Records what is published and lets a test await the n-th message on a topic. */
function recorder() {
  const messages: Published[] = [];
  const waiters: { topic: string; count: number; resolve: () => void }[] = [];
  const publisher: Publisher = {
    publish(topic, payload, options) {
      messages.push({ topic, payload, options });
      for (const waiter of [...waiters]) {
        if (messages.filter((message) => message.topic === waiter.topic).length >= waiter.count) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    },
  };
  const on = (topic: string) => messages.filter((message) => message.topic === topic);
  const waitFor = (topic: string, count: number) =>
    on(topic).length >= count
      ? Promise.resolve()
      : new Promise<void>((resolve) => waiters.push({ topic, count, resolve }));
  return { publisher, messages, on, waitFor };
}

function stamper(): Stamper {
  let seq = 0;
  return () => ({ at: Date.now(), bootId: 'boot-0123456789', seq: seq++ });
}

/** A logger whose lines a test can read. */
function capturedLog() {
  const lines: { level: number; msg: string }[] = [];
  const log = pino(
    { level: 'info' },
    { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) },
  );
  return { log, lines };
}

const TELEMETRY = 'outpost/v1/plant/cam-north/telemetry';
const ALERT = 'outpost/v1/plant/cam-north/alert';

const calm: Reading = {
  cpuLoadPercent: 5,
  temperatureC: 45,
  memory: { usedBytes: 100, totalBytes: 1000 },
  disk: { path: '/data', usedBytes: 100, totalBytes: 1000 },
  uptimeSeconds: 10,
  network: [{ iface: 'eth0', rxBytes: 1, txBytes: 2 }],
  throttled: null,
};

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let dataDir: string;
const running: Telemetry[] = [];

function telemetry(over: Partial<TelemetryDeps> & Pick<TelemetryDeps, 'publisher'>): Telemetry {
  const service = new Telemetry({
    site: 'plant',
    device: 'cam-north',
    dataDir,
    intervalMs: 200,
    stamp: stamper(),
    log: pino({ level: 'silent' }),
    ...over,
  });
  running.push(service);
  return service;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'outpost-telemetry-'));
});

afterAll(async () => {
  await Promise.all(running.map((service) => service.stop()));
  await rm(dataDir, { recursive: true, force: true });
});

describe('telemetry sampler', () => {
  it('samples this machine every interval and every sample fits the topic contract', async () => {
    const { publisher, on, waitFor } = recorder();
    const service = telemetry({ publisher });
    await service.start();
    expect(service.healthy()).toBe(true);
    await waitFor(TELEMETRY, 3);
    await service.stop();

    const samples = on(TELEMETRY).map((message) => {
      expect(message.options).toEqual({ qos: 0 });
      return telemetryPayload.parse(message.payload);
    });
    expect(samples.map((sample) => sample.seq)).toEqual([0, 1, 2]);
    for (const sample of samples) {
      expect(sample.disk.path).toBe(dataDir);
      expect(sample.disk.totalBytes).toBeGreaterThan(0);
      expect(sample.disk.usedBytes).toBeLessThanOrEqual(sample.disk.totalBytes);
      expect(sample.memory.totalBytes).toBeGreaterThan(0);
      expect(sample.memory.usedBytes).toBeLessThanOrEqual(sample.memory.totalBytes);
      expect(sample.uptimeSeconds).toBeGreaterThan(0);
      // Every interface the kernel lists except loopback, whatever this machine has.
      const kernel = parseNetDev(await readFile('/proc/net/dev', 'utf8')).map((entry) => entry.iface);
      expect(sample.network.map((entry) => entry.iface).sort()).toEqual(kernel.sort());
      expect(sample.network.some((entry) => entry.iface === 'lo')).toBe(false);
    }
    // Temperature is reported where the kernel has a thermal zone, null where it has none.
    const zones = (await readdir('/sys/class/thermal').catch(() => [])).filter((entry) =>
      entry.startsWith('thermal_zone'),
    );
    if (zones.length === 0) expect(samples[0]?.temperatureC).toBeNull();
    // Throttling flags only exist on a Raspberry Pi.
    const pi = await readFile('/sys/devices/platform/soc/soc:firmware/get_throttled').then(
      () => true,
      () => false,
    );
    if (!pi) expect(samples[0]?.throttled).toBeNull();
  });

  it('never runs two samples at once: a slow sample makes later ticks skip, not stack', async () => {
    const { publisher, on, waitFor } = recorder();
    const { log, lines } = capturedLog();
    let concurrent = 0;
    let most = 0;
    const slowRead = async (): Promise<Reading> => {
      concurrent += 1;
      most = Math.max(most, concurrent);
      await delay(350);
      concurrent -= 1;
      return calm;
    };
    const service = telemetry({ publisher, log, intervalMs: 100, read: slowRead });
    await service.start();
    await waitFor(TELEMETRY, 3);
    await service.stop();

    expect(most).toBe(1);
    expect(on(TELEMETRY).length).toBeGreaterThanOrEqual(3);
    const { skipped, samples } = service.stats();
    expect(skipped).toBeGreaterThanOrEqual(4);
    expect(samples).toBe(on(TELEMETRY).length);
    expect(lines.filter((line) => line.msg.includes('tick skipped'))).toHaveLength(skipped);
    expect(lines.some((line) => line.msg === 'telemetry sample took longer than the interval')).toBe(true);
  });

  it('stop() is idempotent and nothing is published after it, even from a sample in flight', async () => {
    const { publisher, on, waitFor } = recorder();
    let release: (() => void) | undefined;
    let secondReadBegan: () => void = () => {};
    const secondRead = new Promise<void>((resolve) => (secondReadBegan = resolve));
    let reads = 0;
    const read = async (): Promise<Reading> => {
      reads += 1;
      if (reads === 1) return calm;
      secondReadBegan();
      await new Promise<void>((resolve) => (release = resolve));
      return calm;
    };
    const service = telemetry({ publisher, intervalMs: 50, read, stopWaitMs: 300 });
    await service.start();
    await waitFor(TELEMETRY, 1);
    await secondRead;

    // The second read hangs: stop gives up on it within stopWaitMs.
    const began = Date.now();
    await Promise.all([service.stop(), service.stop()]);
    await service.stop();
    expect(Date.now() - began).toBeLessThan(1000);
    expect(service.healthy()).toBe(false);

    release?.();
    await delay(200);
    expect(on(TELEMETRY)).toHaveLength(1);
    expect(reads).toBe(2);
  });

  it('a failing read is logged once per streak and sampling carries on', async () => {
    const { publisher, waitFor } = recorder();
    const { log, lines } = capturedLog();
    let reads = 0;
    const read = (): Promise<Reading> => {
      reads += 1;
      return reads <= 3
        ? Promise.reject(new Error('ENOENT: no such file, statfs /gone'))
        : Promise.resolve(calm);
    };
    const service = telemetry({ publisher, log, intervalMs: 50, read });
    await service.start();
    await waitFor(TELEMETRY, 1);
    await service.stop();
    expect(service.stats().failed).toBe(3);
    expect(lines.filter((line) => line.msg === 'telemetry read failed')).toHaveLength(1);
    expect(lines.filter((line) => line.msg === 'telemetry read recovered')).toHaveLength(1);
  });

  it('a full disk raises one QoS 1 alert however many samples see it', async () => {
    const { publisher, on, waitFor } = recorder();
    const full: Reading = { ...calm, disk: { path: '/data', usedBytes: 950, totalBytes: 1000 } };
    const service = telemetry({ publisher, intervalMs: 50, read: () => Promise.resolve(full) });
    await service.start();
    await waitFor(TELEMETRY, 5);
    await service.stop();
    const alerts = on(ALERT);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.options).toEqual({ qos: 1 });
    expect(alertPayload.parse(alerts[0]?.payload)).toMatchObject({
      kind: 'disk',
      state: 'raised',
      severity: 'warning',
      device: 'cam-north',
    });
  });
});

describe('reading the kernel', () => {
  it('parses the Pi firmware throttled word, in sysfs and vcgencmd forms', () => {
    expect(parseThrottled('50005\n')).toEqual({
      raw: 0x50005,
      underVoltage: true,
      frequencyCapped: false,
      throttled: true,
    });
    expect(parseThrottled('throttled=0x2')).toEqual({
      raw: 2,
      underVoltage: false,
      frequencyCapped: true,
      throttled: false,
    });
    expect(parseThrottled('0\n')?.raw).toBe(0);
    expect(parseThrottled('error\n')).toBeNull();
  });

  it('reads byte counters from /proc/net/dev and leaves loopback out', () => {
    const text = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo: 85717087  127803    0    0    0     0          0         0 85717087  127803    0    0    0     0       0          0',
      '  eth0: 341646539   10704    0    0    0     0          0         0  1393808    8276    0    0    0     0       0          0',
      'wlan0:12 1 0 0 0 0 0 0 34 1 0 0 0 0 0 0',
      '',
    ].join('\n');
    expect(parseNetDev(text)).toEqual([
      { iface: 'eth0', rxBytes: 341646539, txBytes: 1393808 },
      { iface: 'wlan0', rxBytes: 12, txBytes: 34 },
    ]);
  });
});
