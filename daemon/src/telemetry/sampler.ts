// Telemetry: every interval, read the box's health (CPU load and temperature, memory, the data dir's
// disk, uptime, network counters, Pi throttling), publish it on `…/{device}/telemetry` (QoS 0), and
// publish threshold alerts on `…/{device}/alert` (QoS 1) through thresholds.ts. The only importer of
// systeminformation.
//
// What is read how, and why (measured on the x86 test VM; a Pi is slower, never faster):
// - CPU load: si.currentLoad(), the busy share of all cores since the previous call (so each sample
//   covers one interval). os.cpus() diffs, no process spawned. Its first call waits 500 ms for a baseline.
// - Memory: si.mem(), /proc/meminfo. Used = total − available (what is really taken, not page cache).
// - Temperature: /sys/class/thermal/thermal_zone*/temp, read asynchronously. Not si.cpuTemperature():
//   on Linux it runs `cat` through execSync (blocking the event loop) and then `sensors`, 20–30 ms here.
// - Disk: fs.statfs(dataDir), one syscall on exactly the filesystem holding dataDir (bind mounts and
//   symlinks included). Not si.fsSize(): it spawns `df` (12 ms here) and leaves us to guess the mount.
// - Network: /proc/net/dev, one file read. Not si.networkStats('*'): it re-lists interfaces with
//   several spawned commands on every call (10–70 ms here).
// - Throttling: the Pi firmware driver's sysfs file (hex, drivers/firmware/raspberrypi.c). Not
//   `vcgencmd`: no process to spawn, and child_process stays in gst/fork.ts alone.
import { readdir, readFile, statfs } from 'node:fs/promises';
import { uptime } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import si from 'systeminformation';
import type { Logger } from '../log.js';
import type { Service } from '../lifecycle/service.js';
import type { TelemetryPayload } from '../mqtt/contract.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import { topics } from '../mqtt/topics.js';
import { Thresholds, type ThresholdLimits } from './thresholds.js';

/** One sample without its stamp: what `read` returns. */
export type Reading = Omit<TelemetryPayload, 'at' | 'bootId' | 'seq'>;

export interface TelemetryDeps {
  site: string;
  device: string;
  /** The data dir whose filesystem is reported (config `dataDir`). */
  dataDir: string;
  /** Sampling period: config `telemetry.intervalSeconds` × 1000. */
  intervalMs: number;
  publisher: Publisher;
  /** Meta for each message (at, bootId, seq); the uplink provides it. */
  stamp: Stamper;
  log: Logger;
  /** Alert levels; DEFAULT_THRESHOLDS when absent. */
  limits?: ThresholdLimits;
  /** Reads the machine; tests replace it to make a sample slow. Defaults to `readMachine(dataDir)`. */
  read?: () => Promise<Reading>;
  /** Longest `stop()` waits for a sample in flight before giving up on it. */
  stopWaitMs?: number;
}

export interface TelemetryCounters {
  samples: number;
  failed: number;
  /** Ticks skipped because the previous sample was still running. */
  skipped: number;
  /** Duration of the last sample, ms. */
  lastSampleMs: number | null;
}

export class Telemetry implements Service {
  readonly name = 'telemetry';
  private readonly deps: TelemetryDeps;
  private readonly read: () => Promise<Reading>;
  private readonly thresholds: Thresholds;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private running = false;
  private failing = false;
  private readonly counters: TelemetryCounters = { samples: 0, failed: 0, skipped: 0, lastSampleMs: null };

  /**
   * Stores its arguments; `start()` begins sampling. app.ts builds it as
   * `new Telemetry({ site, device, dataDir, intervalMs: config.telemetry.intervalSeconds * 1000,
   * publisher: uplink, stamp: uplink.stamp, log })`.
   */
  constructor(deps: TelemetryDeps) {
    this.deps = deps;
    this.read = deps.read ?? (() => readMachine(deps.dataDir));
    this.thresholds = new Thresholds({ device: deps.device, stamp: deps.stamp, limits: deps.limits });
  }

  /** Takes the first sample at once (not awaited: CPU load needs 500 ms for a baseline), then one per
   * interval. */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    this.timer = setInterval(() => this.tick(), this.deps.intervalMs);
    this.tick();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.timer);
    this.timer = undefined;
    // Nothing is published once `running` is false; waiting only makes sure no read outlives us.
    const inFlight = this.inFlight;
    if (inFlight) {
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        inFlight,
        new Promise<void>((resolve) => {
          bound = setTimeout(resolve, this.deps.stopWaitMs ?? 2000);
        }),
      ]);
      clearTimeout(bound);
    }
  }

  /**
   * True while sampling is scheduled. A failed read does not make the daemon unhealthy: telemetry
   * missing is no reason for the watchdog to restart the broker and cameras. It is logged instead.
   */
  healthy(): boolean {
    return this.running;
  }

  stats(): Readonly<TelemetryCounters> {
    return { ...this.counters };
  }

  private tick(): void {
    if (!this.running) return;
    if (this.inFlight) {
      // Never stack reads: a slow filesystem or a loaded box would pile them up without end.
      this.counters.skipped += 1;
      this.deps.log.warn(
        { skipped: this.counters.skipped, intervalMs: this.deps.intervalMs },
        'telemetry tick skipped: the previous sample is still running',
      );
      return;
    }
    this.inFlight = this.sample().finally(() => {
      this.inFlight = undefined;
    });
  }

  private async sample(): Promise<void> {
    const began = performance.now();
    let reading: Reading;
    try {
      reading = await this.read();
    } catch (error) {
      this.counters.failed += 1;
      // One error line per failure streak, not one per interval.
      if (!this.failing)
        this.deps.log.error({ err: error, dataDir: this.deps.dataDir }, 'telemetry read failed');
      this.failing = true;
      return;
    }
    const ms = Math.round(performance.now() - began);
    this.counters.lastSampleMs = ms;
    if (ms > this.deps.intervalMs) {
      this.deps.log.warn(
        { ms, intervalMs: this.deps.intervalMs },
        'telemetry sample took longer than the interval',
      );
    }
    if (this.failing) this.deps.log.info({ failed: this.counters.failed }, 'telemetry read recovered');
    this.failing = false;
    if (!this.running) return;
    const { site, device, publisher, stamp } = this.deps;
    const payload: TelemetryPayload = { ...stamp(), ...reading };
    publisher.publish(topics.telemetry(site, device), payload, { qos: 0 });
    this.counters.samples += 1;
    for (const alert of this.thresholds.evaluate(payload)) {
      this.deps.log.warn({ kind: alert.kind, state: alert.state, severity: alert.severity }, alert.message);
      publisher.publish(topics.alert(site, device), alert, { qos: 1 });
    }
  }
}

/** One reading of this machine. Parts run concurrently; only disk is required (it names dataDir). */
export async function readMachine(dataDir: string): Promise<Reading> {
  const [load, mem, temperatureC, disk, network, throttled] = await Promise.all([
    si.currentLoad(),
    si.mem(),
    readTemperature(),
    readDisk(dataDir),
    readNetwork(),
    readThrottled(),
  ]);
  return {
    cpuLoadPercent: round1(clamp(load.currentLoad, 0, 100)),
    temperatureC,
    memory: { usedBytes: Math.max(0, mem.total - mem.available), totalBytes: mem.total },
    disk,
    uptimeSeconds: uptime(),
    network,
    throttled,
  };
}

const THERMAL = '/sys/class/thermal';
/** Zone types that are the CPU/SoC: `cpu-thermal` (Raspberry Pi), `x86_pkg_temp`, `soc_thermal`… */
const CPU_ZONE = /cpu|soc|x86_pkg|package/i;

/** °C of the CPU/SoC thermal zone (the first zone when none is named for it); null when there is none. */
export async function readTemperature(): Promise<number | null> {
  let entries: string[];
  try {
    entries = (await readdir(THERMAL)).filter((entry) => /^thermal_zone\d+$/.test(entry));
  } catch {
    return null;
  }
  const zones = await Promise.all(
    entries.sort(byNumber).map(async (zone) => {
      try {
        const [type, temp] = await Promise.all([
          readFile(join(THERMAL, zone, 'type'), 'utf8'),
          readFile(join(THERMAL, zone, 'temp'), 'utf8'),
        ]);
        const milli = Number.parseInt(temp.trim(), 10);
        return Number.isFinite(milli) ? { type: type.trim(), celsius: milli / 1000 } : undefined;
      } catch {
        // A zone whose sensor is off or unreadable (EAGAIN/ENODATA on some drivers) is skipped.
        return undefined;
      }
    }),
  );
  const readable = zones.filter((zone) => zone !== undefined);
  const zone = readable.find((candidate) => CPU_ZONE.test(candidate.type)) ?? readable[0];
  return zone ? round1(zone.celsius) : null;
}

/**
 * The filesystem holding dataDir. `totalBytes` is used + available to unprivileged users, so it leaves
 * out ext4's root-reserved blocks (5 % by default) that the daemon can never write: used/total is what
 * `df` prints as Use%, and reaches 100 % exactly when the daemon gets ENOSPC.
 */
export async function readDisk(dataDir: string): Promise<Reading['disk']> {
  const fs = await statfs(dataDir);
  const usedBytes = (fs.blocks - fs.bfree) * fs.bsize;
  return { path: dataDir, usedBytes, totalBytes: usedBytes + fs.bavail * fs.bsize };
}

/** Byte counters per interface from /proc/net/dev, loopback left out; empty where there is no procfs. */
export async function readNetwork(file = '/proc/net/dev'): Promise<Reading['network']> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  return parseNetDev(text);
}

/** `  eth0: rxBytes rxPackets … (8 receive fields) txBytes …`; two header lines. */
export function parseNetDev(text: string): Reading['network'] {
  const network: Reading['network'] = [];
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const iface = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    const rxBytes = Number(fields[0]);
    const txBytes = Number(fields[8]);
    if (iface === 'lo' || !Number.isSafeInteger(rxBytes) || !Number.isSafeInteger(txBytes)) continue;
    network.push({ iface, rxBytes, txBytes });
  }
  return network;
}

/** Written by the Pi firmware driver as bare hex (`%x\n`); absent on every other board. */
export const THROTTLED_FILE = '/sys/devices/platform/soc/soc:firmware/get_throttled';

export async function readThrottled(file = THROTTLED_FILE): Promise<Reading['throttled']> {
  try {
    return parseThrottled(await readFile(file, 'utf8'));
  } catch {
    // Absent (not a Pi) or unreadable (the firmware did not answer): unknown, not a failed sample.
    return null;
  }
}

/**
 * Bits of the firmware's throttled word (same as `vcgencmd get_throttled`, whose `throttled=0x…` form is
 * accepted too): 0 under-voltage now, 1 ARM frequency capped now, 2 throttled now; bits 16–18 say the
 * same happened since boot and stay in `raw`.
 */
export function parseThrottled(text: string): Reading['throttled'] {
  const hex = text
    .trim()
    .replace(/^throttled=/, '')
    .replace(/^0x/i, '');
  if (!/^[0-9a-f]{1,8}$/i.test(hex)) return null;
  const raw = Number.parseInt(hex, 16);
  return {
    raw,
    underVoltage: (raw & 0x1) !== 0,
    frequencyCapped: (raw & 0x2) !== 0,
    throttled: (raw & 0x4) !== 0,
  };
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function byNumber(a: string, b: string): number {
  return Number(a.replace(/\D/g, '')) - Number(b.replace(/\D/g, ''));
}

function clamp(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : min;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
