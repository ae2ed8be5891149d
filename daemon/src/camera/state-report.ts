// Publishes each camera's state, retained, on `…/camera/{cam}/state` whenever it changes (and every
// 30 s with fresh counters), and raises one `camera-failed` alert when a camera keeps failing, cleared
// once it streams again: one alert per outage, not one per retry.
import type { Logger } from 'pino';
import type { Service } from '../lifecycle/service.js';
import type { AlertPayload, CameraStatePayload } from '../mqtt/contract.js';
import { topics } from '../mqtt/topics.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import type { Camera } from './camera.js';

/** Restarts in a row without streaming before the camera counts as failing. */
const FAILING_AFTER_RESTARTS = 3;
const POLL_MS = 1000;
const REFRESH_MS = 30_000;

interface Tracked {
  camera: Camera;
  cameraName: string;
  lastKey: string;
  lastPublishedAt: number;
  restartsWhenLastStreaming: number;
  alerted: boolean;
}

export interface CameraStateReportDeps {
  cameras: ReadonlyArray<{ camera: Camera; name: string }>;
  site: string;
  device: string;
  publisher: Publisher & { stamp: Stamper };
  log: Logger;
}

export class CameraStateReport implements Service {
  readonly name = 'camera state';
  private timer: NodeJS.Timeout | undefined;
  private readonly tracked: Tracked[];

  constructor(private readonly deps: CameraStateReportDeps) {
    this.tracked = deps.cameras.map(({ camera, name }) => ({
      camera,
      cameraName: name,
      lastKey: '',
      lastPublishedAt: -Infinity,
      restartsWhenLastStreaming: 0,
      alerted: false,
    }));
  }

  start(): Promise<void> {
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    // The cameras are stopped after this service (reverse order); say so before they go.
    for (const entry of this.tracked) this.publishState(entry, 'stopped');
    return Promise.resolve();
  }

  healthy(): boolean {
    return this.timer !== undefined;
  }

  private poll(): void {
    const now = performance.now();
    for (const entry of this.tracked) {
      const status = entry.camera.status();
      // fps and bitrate change every second: they ride along on the 30 s refresh, except that the first
      // measurement is published at once (a console should not see null for 30 s).
      const key = `${status.state}|${status.encoder}|${status.restarts}|${status.lastError}|${status.fps === undefined}|${status.mountpoint?.state}`;
      if (key !== entry.lastKey || now - entry.lastPublishedAt >= REFRESH_MS) this.publishState(entry);
      entry.lastKey = key;
      if (status.state === 'streaming') {
        entry.restartsWhenLastStreaming = status.restarts;
        if (entry.alerted)
          this.alert(entry, 'cleared', 'info', `camera ${entry.cameraName} is streaming again`);
      } else if (
        !entry.alerted &&
        (status.state === 'failed' ||
          status.restarts - entry.restartsWhenLastStreaming >= FAILING_AFTER_RESTARTS)
      ) {
        this.alert(
          entry,
          'raised',
          'critical',
          `camera ${entry.cameraName} is not streaming: ${status.lastError ?? status.state}`,
        );
      }
    }
  }

  private publishState(entry: Tracked, override?: CameraStatePayload['state']): void {
    const status = entry.camera.status();
    const payload: CameraStatePayload = {
      ...this.deps.publisher.stamp(),
      camera: entry.cameraName,
      state: override ?? status.state,
      encoder: status.encoder ?? null,
      hardwareEncoder: status.encoder === 'v4l2h264enc',
      fps: status.fps ?? null,
      bitrateKbps: status.bitrateKbps ?? null,
      packets: status.packets,
      restarts: status.restarts,
      lastError: status.lastError ?? null,
      ...(status.mountpoint
        ? { mountpoint: { id: status.mountpoint.id, state: status.mountpoint.state } }
        : {}),
    };
    entry.lastPublishedAt = performance.now();
    this.deps.publisher.publish(
      topics.cameraState(this.deps.site, this.deps.device, entry.cameraName),
      payload,
      {
        qos: 1,
        retain: true,
      },
    );
  }

  private alert(
    entry: Tracked,
    state: AlertPayload['state'],
    severity: AlertPayload['severity'],
    message: string,
  ): void {
    entry.alerted = state === 'raised';
    const stamp = this.deps.publisher.stamp();
    const payload: AlertPayload = {
      ...stamp,
      id: `camera-${entry.cameraName}-${stamp.bootId.slice(0, 8)}-${stamp.seq}`,
      device: this.deps.device,
      kind: 'camera-failed',
      severity,
      state,
      message,
      cameras: [entry.cameraName],
    };
    this.deps.log.warn({ camera: entry.cameraName, state }, message);
    this.deps.publisher.publish(topics.alert(this.deps.site, this.deps.device), payload, { qos: 1 });
  }
}
