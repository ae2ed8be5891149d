// Threshold alerts on telemetry, with hysteresis: one `raised` alert when a reading crosses its raise
// level going up, one `cleared` alert when it falls below the (lower) clear level, nothing per sample
// in between. Pure logic: feed it samples, it returns the alerts to publish. No timers, no I/O.
import { randomUUID } from 'node:crypto';
import type { AlertPayload, TelemetryPayload } from '../mqtt/contract.js';
import type { Stamper } from '../mqtt/publisher.js';

/** Raise at `raiseAt` or above; once raised, clear only below `clearBelow` (so a reading that hovers
 * around the raise level does not flap). */
export interface Limit {
  raiseAt: number;
  clearBelow: number;
}

export interface ThresholdLimits {
  /** CPU/SoC °C. A Pi's firmware soft-throttles at 80 °C and hard-throttles at 85 °C. */
  temperatureC: Limit;
  /** Percent of the data dir's filesystem in use; `criticalAt` makes the alert critical. */
  diskPercent: Limit & { criticalAt: number };
  /** Percent of memory in use (total minus available). */
  memoryPercent: Limit;
}

/**
 * Defaults. They live here rather than in the config schema until an operator needs to change them;
 * pass `limits` to override. Disk turns critical at 97 %: clips and broker persistence fail soon after.
 */
export const DEFAULT_THRESHOLDS: ThresholdLimits = {
  temperatureC: { raiseAt: 80, clearBelow: 75 },
  diskPercent: { raiseAt: 90, clearBelow: 85, criticalAt: 97 },
  memoryPercent: { raiseAt: 90, clearBelow: 85 },
};

type Kind = 'temperature' | 'disk' | 'memory';
type Severity = 'warning' | 'critical';

interface Raised {
  id: string;
  severity: Severity;
}

/** One measured value of a sample, with its limit and how to word an alert about it. */
interface Reading {
  kind: Kind;
  /** null: not known in this sample. */
  value: number | null;
  limit: Limit;
  severityOf: (value: number) => Severity;
  describe: (value: number) => string;
}

export interface ThresholdsOptions {
  device: string;
  stamp: Stamper;
  limits?: ThresholdLimits;
  /** Alert ids; a `cleared` alert carries the id of the `raised` one it ends. */
  newId?: () => string;
}

export class Thresholds {
  private readonly limits: ThresholdLimits;
  private readonly device: string;
  private readonly stamp: Stamper;
  private readonly newId: () => string;
  private readonly raised = new Map<Kind, Raised>();

  constructor(options: ThresholdsOptions) {
    this.limits = options.limits ?? DEFAULT_THRESHOLDS;
    this.device = options.device;
    this.stamp = options.stamp;
    this.newId = options.newId ?? randomUUID;
    for (const [key, limit] of Object.entries(this.limits) as [string, Limit][]) {
      if (!(limit.clearBelow <= limit.raiseAt)) {
        throw new RangeError(
          `thresholds.${key}: clearBelow (${limit.clearBelow}) must be at or below raiseAt (${limit.raiseAt}), or the alert could never clear`,
        );
      }
    }
  }

  /** The alerts (0–3) this sample causes, in a fixed order: temperature, disk, memory. */
  evaluate(sample: TelemetryPayload): AlertPayload[] {
    const { temperatureC, diskPercent, memoryPercent } = this.limits;
    const warning = (): Severity => 'warning';
    const readings: Reading[] = [
      {
        kind: 'temperature',
        value: sample.temperatureC,
        limit: temperatureC,
        severityOf: warning,
        describe: (value) => `CPU temperature ${value.toFixed(1)} °C`,
      },
      {
        kind: 'disk',
        value: percent(sample.disk.usedBytes, sample.disk.totalBytes),
        limit: diskPercent,
        severityOf: (value) => (value >= diskPercent.criticalAt ? 'critical' : 'warning'),
        describe: (value) => `disk ${value.toFixed(1)} % used on the filesystem holding ${sample.disk.path}`,
      },
      {
        kind: 'memory',
        value: percent(sample.memory.usedBytes, sample.memory.totalBytes),
        limit: memoryPercent,
        severityOf: warning,
        describe: (value) => `memory ${value.toFixed(1)} % used`,
      },
    ];
    const alerts: AlertPayload[] = [];
    // An unknown value (no sensor, a failed read, a zero total) changes nothing: it is not a recovery.
    for (const reading of readings) if (reading.value !== null) this.check(alerts, reading, reading.value);
    return alerts;
  }

  /** Kinds currently raised, for a status line. */
  active(): Kind[] {
    return [...this.raised.keys()];
  }

  private check(alerts: AlertPayload[], reading: Reading, value: number): void {
    const { kind, limit, severityOf, describe } = reading;
    const current = this.raised.get(kind);
    const unit = kind === 'temperature' ? ' °C' : ' %';
    if (current === undefined) {
      if (value < limit.raiseAt) return;
      const raised: Raised = { id: this.newId(), severity: severityOf(value) };
      this.raised.set(kind, raised);
      alerts.push(
        this.alert(kind, raised, 'raised', `${describe(value)}: at or above ${limit.raiseAt}${unit}`),
      );
      return;
    }
    if (value < limit.clearBelow) {
      this.raised.delete(kind);
      alerts.push(
        this.alert(kind, current, 'cleared', `${describe(value)}: below ${limit.clearBelow}${unit}`),
      );
      return;
    }
    // Still raised. Severity only escalates (warning → critical, once per raise), so the console
    // hears when a full disk becomes urgent, without a message per sample in either direction.
    if (current.severity === 'warning' && severityOf(value) === 'critical') {
      current.severity = 'critical';
      alerts.push(this.alert(kind, current, 'raised', `${describe(value)}: now critical`));
    }
  }

  private alert(kind: Kind, raised: Raised, state: 'raised' | 'cleared', message: string): AlertPayload {
    return {
      ...this.stamp(),
      id: raised.id,
      device: this.device,
      kind,
      // A clear is good news: `info`, whatever the raise was; the shared id ties the two together.
      severity: state === 'cleared' ? 'info' : raised.severity,
      state,
      message,
    };
  }
}

function percent(used: number, total: number): number | null {
  return total > 0 ? (used / total) * 100 : null;
}
