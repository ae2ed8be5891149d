// The last hour (console.telemetryHistoryMinutes) of each box's CPU load and temperature, and its last
// telemetry message, kept by the hub so the Devices page has a chart the moment it opens (telemetry is
// QoS 0 and not retained: a page would otherwise start empty). Bounded: one sample per box at most
// every 5 s, older than the window dropped; at most 256 boxes. Saved to dataDir/console/telemetry.json
// every minute and at stop, so a hub restart keeps the chart.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Service } from '../lifecycle/service.js';
import { jsonOf, telemetryPayload, type TelemetryPayload } from '../mqtt/contract.js';
import { sitePrefix } from '../mqtt/topics.js';
import { writeDurably } from '../files.js';
import type { LocalBus } from './local-bus.js';

const MIN_SPACING_MS = 5000;
const MAX_DEVICES = 256;
const SAVE_EVERY_MS = 60_000;

/** [hub time ms, CPU %, °C or null] */
export type Sample = [number, number, number | null];

export interface DeviceTelemetry {
  last: TelemetryPayload | null;
  /** When the hub received `last` (its own clock: the box's may be wrong). */
  lastAt: number | null;
  samples: Sample[];
}

export class TelemetryHistory implements Service {
  readonly name = 'telemetry history';
  private readonly devices = new Map<string, DeviceTelemetry>();
  private readonly file: string;
  private running = false;
  private subscribed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: {
      site: string;
      dataDir: string;
      windowMinutes: number;
      bus: LocalBus;
      log: Logger;
      now?: () => number;
    },
  ) {
    this.file = join(options.dataDir, 'console', 'telemetry.json');
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  async start(): Promise<void> {
    try {
      const raw = JSON.parse(await readFile(this.file, 'utf8')) as {
        devices?: Record<string, DeviceTelemetry>;
      };
      for (const [name, device] of Object.entries(raw.devices ?? {})) {
        const last = telemetryPayload.safeParse(device.last);
        this.devices.set(name, {
          last: last.success ? last.data : null,
          lastAt: typeof device.lastAt === 'number' ? device.lastAt : null,
          samples: Array.isArray(device.samples) ? device.samples.filter(isSample) : [],
        });
      }
    } catch {
      // no history yet, or unreadable: start empty
    }
    this.running = true;
    if (!this.subscribed) {
      this.subscribed = true;
      this.options.bus.subscribeLocal(`${sitePrefix(this.options.site)}/+/telemetry`, (topic, payload) => {
        if (this.running) this.record(topic.split('/').at(-2) ?? '', payload);
      });
    }
    this.timer = setInterval(() => void this.save(), SAVE_EVERY_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.timer);
    await this.save();
  }

  healthy(): boolean {
    return this.running;
  }

  /** Every box's last telemetry and its samples within the window. */
  snapshot(): Record<string, DeviceTelemetry> {
    const since = this.now() - this.options.windowMinutes * 60_000;
    return Object.fromEntries(
      [...this.devices].map(([name, device]) => [
        name,
        { ...device, samples: device.samples.filter(([at]) => at >= since) },
      ]),
    );
  }

  private record(device: string, payload: Buffer): void {
    const parsed = telemetryPayload.safeParse(jsonOf(payload));
    if (!parsed.success) return;
    let entry = this.devices.get(device);
    if (!entry) {
      if (this.devices.size >= MAX_DEVICES) return;
      this.devices.set(device, (entry = { last: null, lastAt: null, samples: [] }));
    }
    const now = this.now();
    entry.last = parsed.data;
    entry.lastAt = now;
    const previous = entry.samples.at(-1);
    if (previous && now - previous[0] < MIN_SPACING_MS) return;
    entry.samples.push([
      now,
      round(parsed.data.cpuLoadPercent),
      parsed.data.temperatureC === null ? null : round(parsed.data.temperatureC),
    ]);
    const since = now - this.options.windowMinutes * 60_000;
    while ((entry.samples[0]?.[0] ?? Infinity) < since) entry.samples.shift();
  }

  private async save(): Promise<void> {
    try {
      await writeDurably(this.file, JSON.stringify({ version: 1, devices: this.snapshot() }), {
        makeFolder: true,
      });
    } catch (error) {
      this.options.log.warn({ err: error, file: this.file }, 'telemetry history not saved');
    }
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function isSample(value: unknown): value is Sample {
  return (
    Array.isArray(value) && value.length === 3 && typeof value[0] === 'number' && typeof value[1] === 'number'
  );
}
