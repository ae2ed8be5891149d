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
import { argsOf, CommandError, Commands, type Verb } from './mqtt/commands.js';
import { VERSION } from './version.js';
import { z } from 'zod';
import { CameraStateReport } from './camera/state-report.js';
import { Telemetry } from './telemetry/sampler.js';
import { ClipDelivery } from './clips/delivery.js';
import { Panic } from './clips/panic.js';
import { ClipStore } from './clips/store.js';
import { PreRollClipSource } from './clips/mux.js';
import { PreRoll, preRollRoot } from './clips/preroll.js';
import { Button } from './gpio/button.js';
import { Led, type LedBase } from './gpio/led.js';
import { pinOpener, type PinOpener } from './gpio/open-pin.js';
import { topics } from './mqtt/topics.js';
import { Bridge, CENTRE_IDENTITY } from './bridge/bridge.js';
import { Metrics } from './metrics/metrics.js';
import { JanusProcess } from './camera/janus-process.js';
import { ConsoleServer } from './console/server.js';
import { AlertInbox } from './console/inbox.js';
import { TelemetryHistory } from './console/telemetry-history.js';
import { ClipArchive } from './console/clip-archive.js';
import { readFileSync } from 'node:fs';
import { localAdminFile } from './mqtt/broker.js';

export interface App extends Lifecycle {
  readonly services: readonly Service[];
  /** Panic triggers not on MQTT (tests, benchmarks). */
  readonly panic: Panic;
  /** The cameras' pre-roll buffers (bench:panic reports their size). */
  readonly preroll: PreRoll;
  /** The site console (hub role with `console`): its URL and login link once started. */
  readonly console: ConsoleServer | undefined;
  /** One line for systemd's STATUS= and the log: what is running. */
  summary(): string;
  /** SIGHUP: re-read what can change without a restart (the broker's identities). */
  reload(): Promise<void>;
}

/** What the composition root can be handed instead of the real thing (tests, benchmarks). */
export interface AppDeps {
  /** Opens GPIO lines; default: the board's GPIO (gpio/open-pin.ts). A fake pin in benchmarks. */
  openPin?: PinOpener;
}

export function buildApp(config: Config, log: Logger, deps: AppDeps = {}): App {
  const broker = new Broker(config, log.child({ service: 'broker' }));
  const uplink = new Uplink(config, broker, log.child({ service: 'uplink' }));
  // Hub with a `bridge` section: the outbound link to the operations centre (bridge/).
  const bridgeConfig = config.bridge;
  const bridge = bridgeConfig
    ? new Bridge({
        config: { ...config, bridge: bridgeConfig },
        local: {
          address: () => broker.address(),
          credential: broker.serviceCredential(CENTRE_IDENTITY, 'console'),
        },
        publisher: uplink,
        log: log.child({ service: 'bridge' }),
      })
    : undefined;
  const encoders = new Encoders(log.child({ service: 'encoders' }));
  // sfu.mode janus: mountpoints on the site's Janus; its start() returns at once, Janus up or not.
  const janus =
    config.sfu.mode === 'janus' ? new JanusMountpoints(config, log.child({ service: 'janus' })) : undefined;
  const janusUrl = config.sfu.janus.url ?? `http://${config.sfu.host}:8088/janus`;
  // sfu.janus.launch: a Janus of our own on loopback (development box, --defaults).
  const janusProcess = config.sfu.janus.launch
    ? new JanusProcess(janusUrl, config.dataDir, log.child({ service: 'janus-process' }))
    : undefined;
  // The site console, on the hub: the alert inbox and telemetry history it shows, and its HTTPS server.
  const consoleConfig = config.role === 'hub' ? config.console : undefined;
  const inbox = consoleConfig
    ? new AlertInbox({
        site: config.site,
        dataDir: config.dataDir,
        keep: consoleConfig.alerts.keep,
        bus: broker,
        log: log.child({ service: 'inbox' }),
      })
    : undefined;
  const telemetryHistory = consoleConfig
    ? new TelemetryHistory({
        site: config.site,
        dataDir: config.dataDir,
        windowMinutes: consoleConfig.telemetryHistoryMinutes,
        bus: broker,
        log: log.child({ service: 'telemetry-history' }),
      })
    : undefined;
  // The console's clip archive: the clip receiver on a persistent session at this hub's own broker.
  const clipArchive =
    consoleConfig && inbox
      ? new ClipArchive({
          site: config.site,
          dataDir: config.dataDir,
          quotaBytes: consoleConfig.clips.quotaBytes,
          bus: broker,
          inbox,
          connection: () => {
            const address = broker.address();
            const host = address?.host.includes(':') ? `[${address.host}]` : (address?.host ?? '127.0.0.1');
            return {
              url: `mqtt://${host}:${address?.port ?? config.broker.tcp.port}`,
              password: readFileSync(localAdminFile(config.dataDir), 'utf8').trim(),
            };
          },
          log: log.child({ service: 'clip-archive' }),
        })
      : undefined;
  const siteConsole =
    consoleConfig && telemetryHistory
      ? new ConsoleServer({
          site: config.site,
          device: config.device,
          dataDir: config.dataDir,
          console: consoleConfig,
          tls: config.broker.tls,
          janus:
            config.sfu.mode === 'janus'
              ? { url: janusUrl, apiSecret: config.sfu.janus.apiSecret }
              : undefined,
          broker,
          telemetry: telemetryHistory,
          clips: clipArchive,
          maxPacketBytes: config.broker.limits.maxPacketBytes,
          log: log.child({ service: 'console' }),
        })
      : undefined;
  // Each camera's pipeline keeps its last clips.preRollSeconds of H.264 in a folder this owns (tmpfs).
  const preroll = new PreRoll(
    config.cameras,
    { root: preRollRoot(config), preRollSeconds: config.clips.preRollSeconds },
    log.child({ service: 'preroll' }),
  );
  const cameras = config.cameras.map((camera) => ({
    name: camera.name,
    camera: new Camera(
      camera,
      config.sfu,
      encoders,
      log.child({ service: 'camera', camera: camera.name }),
      undefined,
      janus?.mountpoint(camera.name),
      preroll.ring(camera.name),
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

  // Panic clips: the store, delivery through the uplink, the panic service; then the LED and button.
  const clipStore = new ClipStore(config.dataDir, config.clips, log.child({ service: 'clip-store' }), {
    diskDanger: (state, message) =>
      uplink.publish(
        topics.alert(config.site, config.device),
        {
          ...uplink.stamp(),
          id: `clip-store-${uplink.bootId.slice(0, 8)}`,
          device: config.device,
          kind: 'clip-store',
          severity: state === 'raised' ? 'critical' : 'info',
          state,
          message,
        },
        { qos: 1 },
      ),
  });
  const gpio = config.gpio;
  const openPin = gpio ? (deps.openPin ?? pinOpener(gpio)) : undefined;
  const ledBase = (): LedBase =>
    !life.healthy() || button?.problem() !== undefined
      ? 'fault'
      : cameras.some(({ camera }) => camera.status().state === 'streaming')
        ? 'streaming'
        : 'idle';
  const ledConfig = gpio?.led;
  const led = new Led(
    openPin && ledConfig ? () => openPin(ledConfig.pin, { direction: 'out' }) : undefined,
    ledConfig?.activeLow ?? false,
    ledBase,
    log.child({ service: 'led' }),
  );
  const delivery = new ClipDelivery(
    { site: config.site, device: config.device, inFlightChunks: config.clips.inFlightChunks },
    clipStore,
    uplink,
    log.child({ service: 'clip-delivery' }),
    { delivered: () => led.show('clip-delivered') },
  );
  const clipSource = new PreRollClipSource(preroll, log.child({ service: 'clip-source' }));
  const panic = new Panic(
    {
      site: config.site,
      device: config.device,
      preRollSeconds: config.clips.preRollSeconds,
      postRollSeconds: config.clips.postRollSeconds,
      cameras: config.clips.cameras ?? config.cameras.map((camera) => camera.name),
    },
    uplink,
    clipSource,
    clipStore,
    delivery,
    log.child({ service: 'panic' }),
    {
      alertSent: () => led.show('alert-sent'),
      alertAcked: (trigger, ms) => metrics?.panicAlert(trigger, ms),
    },
  );
  const buttonConfig = gpio?.button;
  const button =
    openPin && buttonConfig
      ? new Button(
          () => openPin(buttonConfig.pin, { direction: 'in', edge: 'both', bias: buttonConfig.bias }),
          buttonConfig,
          {
            press: (at) => {
              if (buttonConfig.onPress === 'panic') panic.trigger('button', { at });
            },
            longPress: (at) => {
              if (buttonConfig.onLongPress === 'panic') panic.trigger('button', { at });
            },
          },
          log.child({ service: 'button' }),
        )
      : undefined;
  const verbs: Record<string, Verb> = {
    ping: () =>
      Promise.resolve({
        pong: true,
        device: config.device,
        version: VERSION,
        uptimeSeconds: process.uptime(),
      }),
    status: () =>
      Promise.resolve({
        cameras: cameras.map(({ name, camera }) => ({
          name,
          ...camera.status(),
          // The pre-roll ring's finished segments (tmpfs): what the clip buffer costs in RAM.
          preRoll: { bytes: preroll.ring(name)?.bytes() ?? 0, files: preroll.ring(name)?.files() ?? 0 },
        })),
      }),
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
    // The console (or `outpost clip`, via: cli) asks for a panic clip: the alert goes out first.
    clip: (args) => {
      const { cameras: wanted, via } = argsOf(
        z.strictObject({
          cameras: z.array(z.string()).optional(),
          via: z.enum(['mqtt', 'cli']).default('mqtt'),
        }),
        args,
      );
      const unknown = (wanted ?? []).filter((name) => !byName.has(name));
      if (unknown.length > 0)
        throw new CommandError(
          'BAD_ARGUMENTS',
          `no camera ${unknown.join(', ')}; cameras: ${[...byName.keys()].join(', ')}`,
        );
      return Promise.resolve(panic.trigger(via, { cameras: wanted }));
    },
    // The console missed chunks of a clip: publish them again (no chunks: the manifest again).
    'clip-chunks': async (args) => {
      const { clipId, chunks } = argsOf(
        z.strictObject({
          clipId: z.string().min(1).max(64),
          chunks: z.array(z.int().nonnegative()).max(4096),
        }),
        args,
      );
      // Asked before the clip is stored (a receiver waiting for its manifest): say so, not "no clip".
      if (panic.recordingClips().includes(clipId))
        throw new CommandError(
          'FAILED',
          `clip ${clipId} is still being recorded; its manifest follows once it is stored`,
        );
      try {
        return await delivery.resend(clipId, chunks);
      } catch (error) {
        throw new CommandError('BAD_ARGUMENTS', error instanceof Error ? error.message : String(error));
      }
    },
  };
  const commands = new Commands(
    config.site,
    config.device,
    uplink,
    verbs,
    log.child({ service: 'commands' }),
  );
  // A camera box's uplink listens at the hub; tools on the box (`outpost clip`) publish on its own
  // loopback broker, so the same verbs are answered there too. (A hub's uplink is its own broker.)
  const localCommands =
    config.role === 'camera'
      ? new Commands(
          config.site,
          config.device,
          {
            publish: (topic, payload, options) => broker.publishLocal(topic, payload, options),
            stamp: () => uplink.stamp(),
            subscribe: (filter, handler) => broker.subscribeLocal(filter, handler),
          },
          verbs,
          log.child({ service: 'local-commands' }),
        )
      : undefined;
  // Prometheus /metrics (metrics/): reads the subsystems when scraped.
  const metricsConfig = config.metrics;
  const metrics = metricsConfig
    ? new Metrics({
        config: metricsConfig,
        tls: metricsConfig.tls ?? config.broker.tls,
        sources: {
          info: { site: config.site, device: config.device, role: config.role, version: VERSION },
          dataDir: config.dataDir,
          broker,
          uplink,
          bridge,
          cameras: () => cameras.map(({ name, camera }) => ({ name, ...camera.status() })),
          clipStore,
        },
        log: log.child({ service: 'metrics' }),
      })
    : undefined;
  // Start order is dependency order: the broker, then the uplink that publishes through it (or to the
  // hub); the encoder probe before the cameras that use its answer; the state report after the cameras
  // (so it stops first and can say `stopped`).
  const services: Service[] = [
    broker,
    // Before anything publishes an alert or telemetry on this hub's broker.
    ...(inbox ? [inbox] : []),
    ...(telemetryHistory ? [telemetryHistory] : []),
    uplink,
    ...(bridge ? [bridge] : []),
    ...(clipArchive ? [clipArchive] : []),
    encoders,
    ...(janusProcess ? [janusProcess] : []),
    ...(janus ? [janus] : []),
    // Before the cameras that write into it, so it is removed only after they stopped.
    preroll,
    ...cameras.map(({ camera }) => camera),
    cameraStates,
    telemetry,
    clipStore,
    delivery,
    panic,
    ...(ledConfig ? [led] : []),
    ...(button ? [button] : []),
    commands,
    ...(localCommands ? [localCommands] : []),
    ...(metrics ? [metrics] : []),
    // Last: the page opens on a hub whose every subsystem is up.
    ...(siteConsole ? [siteConsole] : []),
  ];
  const life = lifecycle(services, log, config.shutdown.timeoutMs);
  return {
    ...life,
    services,
    panic,
    preroll,
    console: siteConsole,
    async reload() {
      await broker.reloadIdentities();
      siteConsole?.endRevokedLogins();
    },
    summary() {
      const address = broker.address();
      const streaming = cameras.filter(({ camera }) => camera.status().state === 'streaming').length;
      const hub = uplink.connected() ? 'uplink connected' : `uplink offline, ${uplink.pending()} queued`;
      return `broker on ${address ? `${address.host}:${address.port}` : 'nothing'}; ${hub}; ${streaming}/${cameras.length} cameras streaming to ${config.sfu.host}`;
    },
  };
}
