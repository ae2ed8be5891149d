// Composition root: the one list of subsystems, built from the validated config, in dependency order.
// It touches no process state (signals, exit codes, sd_notify): main.ts does. Tests drive this directly.
import { Camera } from './camera/camera.js';
import { Encoders } from './camera/encoders.js';
import { JanusMountpoints } from './camera/janus.js';
import type { Config } from './config/schema.js';
import { lifecycle, type Lifecycle, type Service } from './lifecycle/service.js';
import type { Logger } from './log.js';
import { Broker } from './mqtt/broker.js';

export interface App extends Lifecycle {
  readonly services: readonly Service[];
  /** One line for systemd's STATUS= and the log: what is running. */
  summary(): string;
}

export function buildApp(config: Config, log: Logger): App {
  const broker = new Broker(config.broker, log.child({ service: 'broker' }));
  const encoders = new Encoders(log.child({ service: 'encoders' }));
  // sfu.mode janus: mountpoints on the site's Janus; its start() returns at once, Janus up or not.
  const janus =
    config.sfu.mode === 'janus' ? new JanusMountpoints(config, log.child({ service: 'janus' })) : undefined;
  const cameras = config.cameras.map(
    (camera) =>
      new Camera(
        camera,
        config.sfu,
        encoders,
        log.child({ service: 'camera', camera: camera.name }),
        undefined,
        janus?.mountpoint(camera.name),
      ),
  );
  // Start order is dependency order: the broker first, so cameras can publish their state on it;
  // the encoder probe before the cameras that use its answer.
  const services: Service[] = [broker, encoders, ...(janus ? [janus] : []), ...cameras];
  const life = lifecycle(services, log, config.shutdown.timeoutMs);
  return {
    ...life,
    services,
    summary() {
      const address = broker.address();
      const streaming = cameras.filter((camera) => camera.status().state === 'streaming').length;
      return `broker on ${address ? `${address.host}:${address.port}` : 'nothing'}; ${streaming}/${cameras.length} cameras streaming to ${config.sfu.host}`;
    },
  };
}
