// The site console on a hub (`console` in the config): the alert inbox and the telemetry history it
// shows, the clip archive it plays from, and its HTTPS server. app.ts places each in the start order.
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Broker } from '../mqtt/broker.js';
import { ClipArchive } from './clip-archive.js';
import { AlertInbox } from './inbox.js';
import { ConsoleServer } from './server.js';
import { TelemetryHistory } from './telemetry-history.js';

export interface SiteConsole {
  /** Started before anything publishes on the hub's broker, so they miss nothing. */
  readonly inbox: AlertInbox;
  readonly telemetry: TelemetryHistory;
  /** The clip receiver on a persistent session at the hub's own broker: started after the uplink. */
  readonly archive: ClipArchive;
  /** Started last: the page opens on a hub whose every subsystem is up. */
  readonly server: ConsoleServer;
}

export function siteConsole(deps: {
  config: Config;
  broker: Broker;
  janusUrl: string;
  /** The broker's local-admin password file: the archive's login at the loopback listener. */
  localAdminFile: string;
  logFor: (service: string) => Logger;
}): SiteConsole | undefined {
  const { config, broker, logFor } = deps;
  if (config.role !== 'hub' || !config.console) return undefined;
  const { site, device, dataDir } = config;
  const settings = config.console;
  const inbox = new AlertInbox({
    site,
    dataDir,
    keep: settings.alerts.keep,
    bus: broker,
    log: logFor('inbox'),
  });
  const telemetry = new TelemetryHistory({
    site,
    dataDir,
    windowMinutes: settings.telemetryHistoryMinutes,
    bus: broker,
    log: logFor('telemetry-history'),
  });
  const archive = new ClipArchive({
    site,
    dataDir,
    quotaBytes: settings.clips.quotaBytes,
    bus: broker,
    inbox,
    connection: () => {
      const address = broker.address();
      const host = address?.host.includes(':') ? `[${address.host}]` : (address?.host ?? '127.0.0.1');
      return {
        url: `mqtt://${host}:${address?.port ?? config.broker.tcp.port}`,
        password: readFileSync(deps.localAdminFile, 'utf8').trim(),
      };
    },
    log: logFor('clip-archive'),
  });
  const server = new ConsoleServer({
    scope: 'site',
    site,
    device,
    dataDir,
    console: settings,
    tls: config.broker.tls,
    janus:
      config.sfu.mode === 'janus' ? { url: deps.janusUrl, apiSecret: config.sfu.janus.apiSecret } : undefined,
    broker,
    telemetry,
    clips: archive,
    maxPacketBytes: config.broker.limits.maxPacketBytes,
    log: logFor('console'),
  });
  return { inbox, telemetry, archive, server };
}
