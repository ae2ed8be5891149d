// The daemon's side of updates (a subsystem, started last): it publishes the box's update state,
// retained, on `…/{device}/update` (contract.ts updatePayload) whenever it changes: the receiver's
// progress while a bundle arrives over the LAN, else the updater's state file (written by root's
// installer and health gate). It writes the health report the gate commits a trial on (every
// subsystem started and healthy, since when) to tmpfs, and it says which LED pattern an update
// asks for (led.ts): the app shows it over the normal ones.
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import type { Service } from '../lifecycle/service.js';
import type { UpdatePayload } from '../mqtt/contract.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import { topics } from '../mqtt/topics.js';
import type { HealthReport } from './gate.js';
import { bootedSlot, type Slot } from './release.js';
import { readState, writeJsonAtomic, type UpdatePaths, type UpdateState } from './state.js';
import { firstbootLed, type FirstbootLed, type UpdateLed } from '../gpio/led.js';

/** How long the outcome of an update, or first boot's refusal, shows on the LED after it happened. */
export const LED_OUTCOME_MS = { committed: 60_000, problem: 10 * 60_000, firstboot: 15 * 60_000 } as const;

export interface UpdateReportDeps {
  site: string;
  device: string;
  /** The version this daemon is (package.json). */
  version: string;
  publisher: Publisher;
  stamp: Stamper;
  paths: UpdatePaths;
  /** Every subsystem started and healthy; the names of those that are not. */
  healthy: () => boolean;
  unhealthy: () => string[];
  log: Logger;
  pollMs?: number;
  now?: () => number;
}

export class UpdateReport implements Service {
  readonly name = 'update-report';
  private timer: NodeJS.Timeout | undefined;
  private slot: Slot | null = null;
  private state: UpdateState | undefined;
  private receiving: { version: string | null; percent: number } | undefined;
  private lastPublished = '';
  private healthySince: number | null = null;
  private firstboot: { led: FirstbootLed; at: number } | undefined;
  private readonly now: () => number;

  constructor(private readonly deps: UpdateReportDeps) {
    this.now = deps.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.slot = await bootedSlot(this.deps.paths.cmdline);
    // First boot refused a bundle this boot (the box kept its old configuration): blink why.
    const result = await readFile(this.deps.paths.firstbootResult, 'utf8').catch(() => undefined);
    if (result) {
      try {
        const { exit, at } = JSON.parse(result) as { exit: number; at: number };
        const led = firstbootLed(exit);
        if (led) this.firstboot = { led, at };
      } catch {
        // not ours to worry about: first boot's own log says what happened
      }
    }
    await this.refresh();
    this.timer = setInterval(() => void this.tick(), this.deps.pollMs ?? 2_000);
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    return Promise.resolve();
  }

  healthy(): boolean {
    return true;
  }

  /** The receiver's progress (percent null: the transfer ended). */
  receiverProgress(version: string | null, percent: number | null): void {
    this.receiving = percent === null ? undefined : { version, percent };
    this.publish();
  }

  /** The LED pattern an update (or first boot's refusal) asks for now, if any. */
  led(): UpdateLed | FirstbootLed | undefined {
    const update = this.updateLed();
    if (update) return update;
    if (this.firstboot && this.now() - this.firstboot.at < LED_OUTCOME_MS.firstboot)
      return this.firstboot.led;
    return undefined;
  }

  private updateLed(): UpdateLed | undefined {
    if (this.receiving) return 'update-receiving';
    const state = this.state;
    if (!state) return undefined;
    const age = this.now() - state.since;
    switch (state.phase) {
      case 'installing':
      case 'rebooting':
      case 'trial':
        return 'update-installing';
      case 'committed':
        return age < LED_OUTCOME_MS.committed && state.from.slot !== this.slot
          ? 'update-committed'
          : undefined;
      case 'refused':
      case 'failed':
        return age < LED_OUTCOME_MS.problem ? 'update-refused' : undefined;
      case 'rolled-back':
        return age < LED_OUTCOME_MS.problem ? 'update-rolled-back' : undefined;
      case 'idle':
        return undefined;
    }
  }

  private async tick(): Promise<void> {
    try {
      await this.writeHealth();
      await this.refresh();
    } catch (error) {
      this.deps.log.warn({ err: error }, 'update state unreadable');
    }
  }

  private async refresh(): Promise<void> {
    this.state = await readState(this.deps.paths);
    this.publish();
  }

  private async writeHealth(): Promise<void> {
    if (!this.deps.paths.healthFile) return; // not under systemd: no gate reads it
    const healthy = this.deps.healthy();
    if (!healthy) this.healthySince = null;
    else this.healthySince ??= this.now();
    const report: HealthReport = {
      version: this.deps.version,
      healthy,
      unhealthy: healthy ? [] : this.deps.unhealthy(),
      healthySince: this.healthySince,
      at: this.now(),
    };
    await mkdir(dirname(this.deps.paths.healthFile), { recursive: true });
    await writeJsonAtomic(this.deps.paths.healthFile, report, 0o644);
  }

  /** The payload for what is known now. */
  payload(): Omit<UpdatePayload, 'at' | 'bootId' | 'seq'> {
    const running = { version: this.deps.version, slot: this.slot };
    const base = { device: this.deps.device, running };
    if (this.receiving) {
      return {
        ...base,
        state: 'receiving',
        target: { version: this.receiving.version, slot: null },
        progress: this.receiving.percent,
        reason: null,
        code: null,
        since: this.now(),
      };
    }
    const state = this.state;
    if (!state) {
      return { ...base, state: 'idle', target: null, progress: null, reason: null, code: null, since: 0 };
    }
    // The installer wrote `rebooting`; once the new slot runs, the gate writes `trial`.
    return {
      ...base,
      state: state.phase,
      target: state.target,
      progress: state.progress,
      reason: state.reason,
      code: state.code,
      since: state.since,
    };
  }

  private publish(): void {
    const payload = this.payload();
    // `since` of a receiving state moves with every percent: compare without it.
    const key = JSON.stringify({ ...payload, since: payload.state === 'receiving' ? 0 : payload.since });
    if (key === this.lastPublished) return;
    this.lastPublished = key;
    this.deps.publisher.publish(
      topics.update(this.deps.site, this.deps.device),
      { ...this.deps.stamp(), ...payload },
      { qos: 1, retain: true },
    );
  }
}
