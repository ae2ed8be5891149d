// Composition root: the one list of subsystems, built from the validated config, in dependency order.
// It touches no process state (signals, exit codes, sd_notify): main.ts does. Tests drive this directly.
import { Camera } from './camera/camera.js';
import { Encoders } from './camera/encoders.js';
import { JanusMountpoints } from './camera/janus.js';
import type { Config } from './config/schema.js';
import { lifecycle, type Lifecycle, type Service } from './lifecycle/service.js';
import type { Logger } from './log.js';
import { Broker } from './mqtt/broker.js';
import { Uplink } from './mqtt/uplink.js';
import { argsOf, CommandError, Commands } from './mqtt/commands.js';
import { VERSION } from './version.js';
import { z } from 'zod';
import { CameraStateReport } from './camera/state-report.js';
import { Telemetry } from './telemetry/sampler.js';

export interface App extends Lifecycle {
  readonly services: readonly Service[];
  /** One line for systemd's STATUS= and the log: what is running. */
  summary(): string;
  /** SIGHUP: re-read what can change without a restart (the broker's identities). */
  reload(): Promise<void>;
}

export function buildApp(config: Config, log: Logger): App {
  const broker = new Broker(config, log.child({ service: 'broker' }));
  const uplink = new Uplink(config, broker, log.child({ service: 'uplink' }));
  const encoders = new Encoders(log.child({ service: 'encoders' }));
  // sfu.mode janus: mountpoints on the site's Janus; its start() returns at once, Janus up or not.
  const janus =
    config.sfu.mode === 'janus' ? new JanusMountpoints(config, log.child({ service: 'janus' })) : undefined;
  const cameras = config.cameras.map((camera) => ({
    name: camera.name,
    camera: new Camera(
      camera,
      config.sfu,
      encoders,
      log.child({ service: 'camera', camera: camera.name }),
      undefined,
      janus?.mountpoint(camera.name),
    ),
  }));
  const cameraStates = new CameraStateReport(
    cameras,
    config.site,
    config.device,
    uplink,
    log.child({ service: 'camera-state' }),
  );
  const telemetry = new Telemetry({
    site: config.site,
    device: config.device,
    dataDir: config.dataDir,
    intervalMs: config.telemetry.intervalSeconds * 1000,
    publisher: uplink,
    stamp: () => uplink.stamp(),
    log: log.child({ service: 'telemetry' }),
  });
  const byName = new Map(cameras.map(({ name, camera }) => [name, camera]));
  const commands = new Commands(
    config.site,
    config.device,
    uplink,
    {
      ping: () =>
        Promise.resolve({
          pong: true,
          device: config.device,
          version: VERSION,
          uptimeSeconds: process.uptime(),
        }),
      status: () =>
        Promise.resolve({ cameras: cameras.map(({ name, camera }) => ({ name, ...camera.status() })) }),
      'restart-camera': async (args) => {
        const { camera: name } = argsOf(z.strictObject({ camera: z.string() }), args);
        const camera = byName.get(name);
        if (!camera)
          throw new CommandError(
            'BAD_ARGUMENTS',
            `no camera ${name}; cameras: ${[...byName.keys()].join(', ')}`,
          );
        await camera.stop();
        await camera.start();
        return { camera: name, state: camera.status().state };
      },
    },
    log.child({ service: 'commands' }),
  );
  // Start order is dependency order: the broker, then the uplink that publishes through it (or to the
  // hub); the encoder probe before the cameras that use its answer; the state report after the cameras
  // (so it stops first and can say `stopped`).
  const services: Service[] = [
    broker,
    uplink,
    encoders,
    ...(janus ? [janus] : []),
    ...cameras.map(({ camera }) => camera),
    cameraStates,
    telemetry,
    commands,
  ];
  const life = lifecycle(services, log, config.shutdown.timeoutMs);
  return {
    ...life,
    services,
    reload: () => broker.reloadIdentities(),
    summary() {
      const address = broker.address();
      const streaming = cameras.filter(({ camera }) => camera.status().state === 'streaming').length;
      const hub = uplink.connected() ? 'uplink connected' : `uplink offline, ${uplink.pending()} queued`;
      return `broker on ${address ? `${address.host}:${address.port}` : 'nothing'}; ${hub}; ${streaming}/${cameras.length} cameras streaming to ${config.sfu.host}`;
    },
  };
}
