// Prometheus `/metrics` on every box (prom-client, its only importer). Names are `outpost_…`, modelled on
// Mosquitto's `$SYS` meanings where there is one (docs/metrics.md lists every metric). Values are read
// from the subsystems when Prometheus scrapes (collect callbacks), so nothing is counted per message
// here; the broker's two message counters are plain increments in hooks it runs anyway.
//
// HTTPS with the box's certificate and a credential (bearer token or basic auth, both of which
// Prometheus speaks): no anonymous scraping on the LAN. Plain HTTP only on loopback. Its own listener
// and config key (`metrics`), so that it can later share the console's HTTPS server if that is wanted.
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BridgeClass, Config } from '../config/schema.js';
import { readSecret } from '../config/secret.js';
import { OutpostError } from '../errors.js';
import { listen } from '../lifecycle/listen.js';
import type { Service } from '../lifecycle/service.js';
import { readDisk, readTemperature, readThrottled } from '../telemetry/sampler.js';

const METRICS_SECRET_HINT = 'provision the box or fix the path';

type MetricsConfig = NonNullable<Config['metrics']>;

/** What the metrics read from the rest of the daemon, at scrape time. */
export interface MetricSources {
  info: { site: string; device: string; role: string; version: string };
  dataDir: string;
  broker: {
    clientsConnected(): number;
    readonly counters: {
      messagesReceived: number;
      messagesSent: number;
      refusedPublish: number;
      refusedSubscribe: number;
      refusedDeliveries: number;
      authFailures: number;
      loginsShed: number;
      loginsBackedOff: number;
      limitDisconnects: number;
    };
  };
  uplink: {
    connected(): boolean;
    stats(): { queuedMessages: number; queuedBytes: number; droppedOffline: number };
  };
  bridge:
    | {
        stats(): {
          up: boolean;
          queuedMessages: number;
          queuedBytes: number;
          maxBytes: number;
          dropped: Record<BridgeClass, number>;
          forwarded: number;
          received: number;
          connects: number;
        };
      }
    | undefined;
  cameras: () => Array<{
    name: string;
    state: string;
    fps: number | undefined;
    bitrateKbps: number | undefined;
    restarts: number;
    packets: number;
  }>;
  clipStore: { totalBytes(): number; list(): readonly unknown[] };
}

export interface MetricsDeps {
  config: MetricsConfig;
  /** Server certificate and key (PEM paths): metrics.tls, else broker.tls. */
  tls: { cert: string; key: string } | undefined;
  sources: MetricSources;
  log: Logger;
}

const CAMERA_STATES = ['starting', 'streaming', 'restarting', 'failed', 'stopped'] as const;
/** Press → alert acknowledged by the hub: well under a second is the target (DESIGN.md). */
const PANIC_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics implements Service {
  readonly name = 'metrics';
  readonly registry = new Registry();
  private server: Server | undefined;
  private readonly panic: Histogram;
  private credentials: { bearer?: Buffer; basic?: Buffer } = {};
  private scrape: Promise<string> | undefined;
  private refusedSinceLog = 0;
  private lastRefusalLog = -Infinity;

  constructor(private readonly deps: MetricsDeps) {
    this.panic = new Histogram({
      name: 'outpost_panic_alert_seconds',
      help: 'Panic press (button edge, cmd or CLI) to the alert acknowledged by the hub (PUBACK), seconds',
      buckets: PANIC_BUCKETS,
      labelNames: ['trigger'],
      registers: [this.registry],
    });
    this.define();
  }

  /** A panic alert was acknowledged by the hub `ms` after the press. */
  panicAlert(trigger: string, ms: number): void {
    this.panic.observe({ trigger }, Math.max(0, ms) / 1000);
  }

  async start(): Promise<void> {
    const { config, tls, log } = this.deps;
    const token = config.bearerTokenFile
      ? await readCredential(config.bearerTokenFile, 'metrics.bearerTokenFile')
      : undefined;
    const password = config.basicAuth
      ? await readCredential(config.basicAuth.passwordFile, 'metrics.basicAuth.passwordFile')
      : undefined;
    this.credentials = {
      ...(token !== undefined ? { bearer: digest(`Bearer ${token}`) } : {}),
      ...(config.basicAuth && password !== undefined
        ? {
            basic: digest(
              `Basic ${Buffer.from(`${config.basicAuth.username}:${password}`).toString('base64')}`,
            ),
          }
        : {}),
    };
    const handler = (request: IncomingMessage, response: ServerResponse): void =>
      void this.handle(request, response);
    const server = tls
      ? createHttpsServer(
          {
            cert: await readSecret(tls.cert, 'metrics.tls.cert', METRICS_SECRET_HINT),
            key: await readSecret(tls.key, 'metrics.tls.key', METRICS_SECRET_HINT),
            minVersion: 'TLSv1.2',
          },
          handler,
        )
      : createHttpServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 15_000;
    server.maxConnections = 32;
    await listen(server, config, 'metrics');
    server.on('error', (error) => log.error({ err: error }, 'metrics listener error'));
    if (tls)
      server.on('tlsClientError', (error) => log.debug({ err: error }, 'metrics: TLS handshake failed'));
    this.server = server;
    const address = server.address();
    log.info(
      {
        host: config.host,
        port: typeof address === 'object' && address ? address.port : config.port,
        tls: !!tls,
      },
      'metrics listening',
    );
  }

  /** The listening port (0 in the config picks one). */
  port(): number | undefined {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : undefined;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  healthy(): boolean {
    return this.server?.listening === true;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = (request.url ?? '/').split('?')[0];
    if (!this.authorized(request.headers.authorization)) {
      this.refused(request);
      const schemes = [
        ...(this.credentials.bearer ? ['Bearer realm="outpost"'] : []),
        ...(this.credentials.basic ? ['Basic realm="outpost"'] : []),
      ];
      response.writeHead(401, { 'www-authenticate': schemes.join(', '), 'content-type': 'text/plain' });
      response.end('credentials required: a bearer token or basic auth (docs/metrics.md)\n');
      return;
    }
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics is served here\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    try {
      // Scrapes that arrive together share one collection.
      this.scrape ??= this.registry.metrics().finally(() => (this.scrape = undefined));
      const body = await this.scrape;
      response.writeHead(200, { 'content-type': this.registry.contentType });
      response.end(request.method === 'HEAD' ? undefined : body);
    } catch (error) {
      this.deps.log.error({ err: error }, 'metrics could not be collected');
      response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n');
    }
  }

  private authorized(header: string | undefined): boolean {
    if (!header) return false;
    const given = digest(header.trim());
    const { bearer, basic } = this.credentials;
    // Both compared, always, in constant time.
    const okBearer = bearer ? timingSafeEqual(given, bearer) : false;
    const okBasic = basic ? timingSafeEqual(given, basic) : false;
    return okBearer || okBasic;
  }

  private refused(request: IncomingMessage): void {
    this.refusedSinceLog += 1;
    const now = performance.now();
    if (now - this.lastRefusalLog < 10_000) return;
    this.deps.log.warn(
      { remote: request.socket.remoteAddress, refused: this.refusedSinceLog },
      'metrics request refused: no or wrong credentials',
    );
    this.lastRefusalLog = now;
    this.refusedSinceLog = 0;
  }

  /** Every metric, read from the sources at scrape time. */
  private define(): void {
    const { sources } = this.deps;
    const registers = [this.registry];
    const gauge = (
      name: string,
      help: string,
      collect: (g: Gauge) => void | Promise<void>,
      labelNames: string[] = [],
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          await collect(this);
        },
      });
    /** A counter kept equal to a subsystem's own running count. */
    const counter = (
      name: string,
      help: string,
      read: () => Array<[Record<string, string>, number]>,
      labelNames: string[] = [],
    ) => {
      const seen = new Map<string, number>();
      return new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          for (const [labels, value] of read()) {
            const key = JSON.stringify(labels);
            const delta = value - (seen.get(key) ?? 0);
            // inc(…, 0) makes the series exist at 0: rules such as increase() need it before the first event.
            if (delta > 0 || !seen.has(key)) this.inc(labels, Math.max(0, delta));
            seen.set(key, Math.max(value, seen.get(key) ?? 0));
          }
        },
      });
    };
    collectDefaultMetrics({ register: this.registry, prefix: 'outpost_' });

    gauge(
      'outpost_info',
      'This box: constant 1 with its site, device, role and version',
      (g) => {
        const { site, device, role, version } = sources.info;
        g.set({ site, device, role, version }, 1);
      },
      ['site', 'device', 'role', 'version'],
    );

    // Broker ($SYS/broker/clients/connected, …/publish/messages/received|sent|dropped).
    const broker = sources.broker;
    gauge('outpost_broker_clients_connected', 'MQTT clients connected to this box’s broker', (g) =>
      g.set(broker.clientsConnected()),
    );
    counter('outpost_broker_messages_received_total', 'PUBLISH messages received from clients', () => [
      [{}, broker.counters.messagesReceived],
    ]);
    counter('outpost_broker_messages_sent_total', 'PUBLISH messages delivered to clients', () => [
      [{}, broker.counters.messagesSent],
    ]);
    counter(
      'outpost_broker_messages_dropped_total',
      'Messages not delivered to a client whose identity may no longer read them',
      () => [[{}, broker.counters.refusedDeliveries]],
    );
    counter(
      'outpost_broker_acl_refusals_total',
      'Publishes and subscriptions refused by the ACL',
      () => [
        [{ kind: 'publish' }, broker.counters.refusedPublish],
        [{ kind: 'subscribe' }, broker.counters.refusedSubscribe],
      ],
      ['kind'],
    );
    counter(
      'outpost_broker_login_refusals_total',
      'Logins refused: bad credentials, shed (login queue full), address backing off',
      () => [
        [{ reason: 'credentials' }, broker.counters.authFailures],
        [{ reason: 'shed' }, broker.counters.loginsShed],
        [{ reason: 'backoff' }, broker.counters.loginsBackedOff],
      ],
      ['reason'],
    );
    counter(
      'outpost_broker_limit_disconnects_total',
      'Clients disconnected for a size, rate or framing limit',
      () => [[{}, broker.counters.limitDisconnects]],
    );

    // Uplink (this box → its hub).
    gauge('outpost_uplink_up', '1 when the uplink is connected to the hub', (g) =>
      g.set(sources.uplink.connected() ? 1 : 0),
    );
    gauge(
      'outpost_uplink_queue_messages',
      'QoS 1 messages in the uplink’s on-disk store, not yet acknowledged',
      (g) => g.set(sources.uplink.stats().queuedMessages),
    );
    gauge('outpost_uplink_queue_bytes', 'Bytes of those messages', (g) =>
      g.set(sources.uplink.stats().queuedBytes),
    );
    counter(
      'outpost_uplink_dropped_total',
      'QoS 0 messages (telemetry) not sent because the hub was away',
      () => [[{}, sources.uplink.stats().droppedOffline]],
    );

    // Bridge (hub → operations centre).
    const bridge = sources.bridge;
    if (bridge) {
      gauge('outpost_bridge_up', '1 when the link to the central broker is up', (g) =>
        g.set(bridge.stats().up ? 1 : 0),
      );
      gauge('outpost_bridge_queue_messages', 'Messages waiting in the bridge’s on-disk store', (g) =>
        g.set(bridge.stats().queuedMessages),
      );
      gauge('outpost_bridge_queue_bytes', 'Bytes waiting in the bridge’s on-disk store', (g) =>
        g.set(bridge.stats().queuedBytes),
      );
      gauge('outpost_bridge_queue_max_bytes', 'The store’s bound (bridge.maxQueueBytes)', (g) =>
        g.set(bridge.stats().maxBytes),
      );
      counter(
        'outpost_bridge_dropped_total',
        'Messages dropped because the store was full, by class (telemetry first; alerts and chat last)',
        () => Object.entries(bridge.stats().dropped).map(([cls, n]) => [{ class: cls }, n]),
        ['class'],
      );
      counter('outpost_bridge_forwarded_total', 'Messages the central broker acknowledged', () => [
        [{}, bridge.stats().forwarded],
      ]);
      counter('outpost_bridge_received_total', 'Messages carried from the centre to the site', () => [
        [{}, bridge.stats().received],
      ]);
      counter('outpost_bridge_connects_total', 'Connections made to the central broker', () => [
        [{}, bridge.stats().connects],
      ]);
    }

    // Cameras.
    gauge(
      'outpost_camera_up',
      '1 when the camera is streaming',
      (g) => {
        for (const camera of sources.cameras())
          g.set({ camera: camera.name }, camera.state === 'streaming' ? 1 : 0);
      },
      ['camera'],
    );
    gauge(
      'outpost_camera_state',
      'The camera’s state: 1 on the current one',
      (g) => {
        for (const camera of sources.cameras())
          for (const state of CAMERA_STATES)
            g.set({ camera: camera.name, state }, camera.state === state ? 1 : 0);
      },
      ['camera', 'state'],
    );
    gauge(
      'outpost_camera_fps',
      'Encoded frames per second leaving the encoder (last ~5 s)',
      (g) => {
        for (const camera of sources.cameras()) g.set({ camera: camera.name }, camera.fps ?? 0);
      },
      ['camera'],
    );
    gauge(
      'outpost_camera_bitrate_bits_per_second',
      'Encoded H.264 bits per second leaving the encoder (last ~5 s)',
      (g) => {
        for (const camera of sources.cameras())
          g.set({ camera: camera.name }, (camera.bitrateKbps ?? 0) * 1000);
      },
      ['camera'],
    );
    counter(
      'outpost_camera_restarts_total',
      'Camera pipeline restarts',
      () => sources.cameras().map((camera) => [{ camera: camera.name }, camera.restarts]),
      ['camera'],
    );
    counter(
      'outpost_camera_rtp_packets_total',
      'RTP packets sent to the SFU',
      () => sources.cameras().map((camera) => [{ camera: camera.name }, camera.packets]),
      ['camera'],
    );

    // Clip store, disk, temperature, throttling.
    gauge('outpost_clip_store_bytes', 'Bytes of clips kept on disk', (g) =>
      g.set(sources.clipStore.totalBytes()),
    );
    gauge('outpost_clip_store_clips', 'Clips kept on disk', (g) => g.set(sources.clipStore.list().length));
    gauge('outpost_disk_used_bytes', 'Bytes used on the data dir’s filesystem', async (g) =>
      g.set((await readDisk(sources.dataDir)).usedBytes),
    );
    gauge(
      'outpost_disk_size_bytes',
      'Bytes the daemon can use on the data dir’s filesystem (used + available to it)',
      async (g) => g.set((await readDisk(sources.dataDir)).totalBytes),
    );
    gauge(
      'outpost_temperature_celsius',
      'CPU/SoC temperature (absent where the board reports none)',
      async (g) => {
        const celsius = await readTemperature();
        g.reset();
        if (celsius !== null) g.set({ sensor: 'soc' }, celsius);
      },
      ['sensor'],
    );
    gauge(
      'outpost_throttled',
      'Raspberry Pi firmware flags now: under-voltage, throttled, frequency capped (absent elsewhere)',
      async (g) => {
        const flags = await readThrottled();
        g.reset();
        if (!flags) return;
        g.set({ flag: 'under_voltage' }, flags.underVoltage ? 1 : 0);
        g.set({ flag: 'throttled' }, flags.throttled ? 1 : 0);
        g.set({ flag: 'frequency_capped' }, flags.frequencyCapped ? 1 : 0);
      },
      ['flag'],
    );
  }
}

/** Header values are compared as SHA-256 digests: equal lengths, so timingSafeEqual applies. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** A scrape credential: at least 16 characters, or anyone on the LAN could guess it. */
async function readCredential(file: string, key: string): Promise<string> {
  const secret = await readSecret(file, key, METRICS_SECRET_HINT);
  if (secret.length < 16) {
    throw new OutpostError(
      'CONFIG_INVALID',
      `${key}: ${file} holds ${secret.length} characters; at least 16 are needed`,
      {
        hint: 'make one with: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE',
      },
    );
  }
  return secret;
}

/** The box's /metrics when its config has a `metrics` section. */
export function boxMetrics(deps: {
  config: Pick<Config, 'site' | 'device' | 'role' | 'dataDir' | 'metrics' | 'broker'>;
  version: string;
  sources: Omit<MetricSources, 'info' | 'dataDir'>;
  log: Logger;
}): Metrics | undefined {
  const { config } = deps;
  if (!config.metrics) return undefined;
  return new Metrics({
    config: config.metrics,
    tls: config.metrics.tls ?? config.broker.tls,
    sources: {
      info: { site: config.site, device: config.device, role: config.role, version: deps.version },
      dataDir: config.dataDir,
      ...deps.sources,
    },
    log: deps.log,
  });
}
