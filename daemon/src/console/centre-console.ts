// The console at the operations centre: `outpost centre console --config FILE`. The same HTTPS server
// and the same page as a hub's console (server.ts), with the centre's broker, which every site's hub
// bridges to (docs/bridge.md), behind the login and the page's MQTT connection (central-broker.ts).
// Topics keep contract v1 (the site is in every topic), so the page subscribes to `outpost/v1/+/…`
// and offers every site. Nothing here connects into a site: no live video, no clip archive.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CentreConsoleConfig } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import { CentralBroker } from './central-broker.js';
import { ConsoleServer } from './server.js';

/** The centre's console server, built from its config (tests start it in-process). */
export async function centreConsole(
  config: CentreConsoleConfig,
  log: Logger,
  options: { staticDir?: string } = {},
): Promise<ConsoleServer> {
  let ca: Buffer | undefined;
  if (config.centralBroker.ca) {
    try {
      ca = await readFile(config.centralBroker.ca);
    } catch (error) {
      throw new OutpostError(
        'TLS_MATERIAL_INVALID',
        `centralBroker.ca ${config.centralBroker.ca} cannot be read`,
        {
          hint: "give the CA that signed the central broker's certificate (CENTRE/ca/ca.crt from outpost-provision centre init)",
          cause: error,
        },
      );
    }
  }
  const broker = new CentralBroker({
    url: config.centralBroker.url,
    ca,
    log: log.child({ part: 'central-broker' }),
  });
  return new ConsoleServer({
    scope: 'centre',
    site: config.name,
    device: config.name,
    dataDir:
      config.dataDir ?? process.env.STATE_DIRECTORY ?? join(homedir(), '.local', 'state', 'outpost-centre'),
    console: config.console,
    tls: undefined,
    janus: undefined,
    broker,
    telemetry: undefined,
    clips: undefined,
    maxPacketBytes: 256 * 1024,
    log: log.child({ service: 'centre-console' }),
    ...(options.staticDir ? { staticDir: options.staticDir } : {}),
  });
}
