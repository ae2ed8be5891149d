// The update room as the composition root sees it: the report subsystem (report.ts), the LAN
// receiver's command verbs (receiver.ts) and the LED pattern an update asks for, built from the config.
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { FirstbootLed, UpdateLed } from '../gpio/led.js';
import type { Service } from '../lifecycle/service.js';
import type { Logger } from '../log.js';
import type { Verb } from '../mqtt/commands.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import { VERSION } from '../version.js';
import { BundleReceiver } from './receiver.js';
import { UpdateReport } from './report.js';
import { BOX_PATHS, type UpdatePaths } from './state.js';

export interface UpdateRoom {
  /** Start it last: its health report says every other subsystem started. */
  service: Service;
  verbs: Record<string, Verb>;
  led(): UpdateLed | FirstbootLed | undefined;
}

/** The updater's paths for a daemon with this data dir (the health report only under systemd). */
export function daemonUpdatePaths(dataDir: string, env: NodeJS.ProcessEnv = process.env): UpdatePaths {
  const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
  return {
    ...BOX_PATHS,
    receiveDir: join(dataDir, 'update'),
    healthFile: runtime ? join(runtime, 'update-health.json') : '',
  };
}

export function updateRoom(
  config: Pick<Config, 'site' | 'device' | 'dataDir' | 'clips'>,
  deps: {
    publisher: Publisher;
    stamp: Stamper;
    healthy: () => boolean;
    unhealthy: () => string[];
    log: Logger;
  },
): UpdateRoom {
  const report = new UpdateReport({
    site: config.site,
    device: config.device,
    version: VERSION,
    paths: daemonUpdatePaths(config.dataDir),
    ...deps,
  });
  const receiver = new BundleReceiver({
    dir: join(config.dataDir, 'update'),
    reserveBytes: config.clips.minFreeBytes,
    log: deps.log,
    progress: (version, percent) => report.receiverProgress(version, percent),
  });
  return {
    service: {
      name: report.name,
      start: () => report.start(),
      stop: async () => {
        await receiver.close();
        await report.stop();
      },
      healthy: () => report.healthy(),
    },
    verbs: receiver.verbs(),
    led: () => report.led(),
  };
}
