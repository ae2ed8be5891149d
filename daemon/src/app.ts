// Composition root: the one list of subsystems, built from the validated config, in dependency order.
// It touches no process state (signals, exit codes, sd_notify): main.ts does. Tests drive this directly.
import { siteBridge } from './bridge/bridge.js';
import { Camera } from './camera/camera.js';
import { Encoders } from './camera/encoders.js';
import { JanusProcess } from './camera/janus-process.js';
import { JanusMountpoints } from './camera/janus.js';
import { CameraStateReport } from './camera/state-report.js';
import { ClipDelivery } from './clips/delivery.js';
import { PreRollClipSource } from './clips/mux.js';
import { Panic } from './clips/panic.js';
import { PreRoll, preRollRoot } from './clips/preroll.js';
import { clipStoreAlerts, ClipStore } from './clips/store.js';
import { verbs } from './commands/verbs.js';
import type { ConsoleServer } from './console/server.js';
import { siteConsole } from './console/site-console.js';
import type { Config } from './config/schema.js';
import { pinOpener, type PinOpener } from './gpio/open-pin.js';
import { ledBase, panicButton, statusLed } from './gpio/panel.js';
import { lifecycle, type Lifecycle, type Service } from './lifecycle/service.js';
import type { Logger } from './log.js';
import { boxMetrics } from './metrics/metrics.js';
import { Broker } from './mqtt/broker.js';
import { localAdminFile } from './mqtt/local-admin.js';
import { Commands } from './mqtt/commands.js';
import { Uplink } from './mqtt/uplink.js';
import { Telemetry } from './telemetry/sampler.js';
import { updateRoom } from './update/room.js';
import { VERSION } from './version.js';

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
  const logFor = (service: string) => log.child({ service });
  const { site, device } = config;

  const broker = new Broker(config, logFor('broker'));
  const uplink = new Uplink(config, broker, logFor('uplink'));
  // Hub with a `bridge` section: the outbound link to the operations centre (docs/bridge.md).
  const bridge = siteBridge({ config, broker, publisher: uplink, log: logFor('bridge') });
  const encoders = new Encoders(logFor('encoders'));
  // sfu.mode janus: mountpoints on the site's Janus; its start() returns at once, Janus up or not.
  const janus = config.sfu.mode === 'janus' ? new JanusMountpoints(config, logFor('janus')) : undefined;
  const janusUrl = config.sfu.janus.url ?? `http://${config.sfu.host}:8088/janus`;
  // sfu.janus.launch: a Janus of our own on loopback (development box, --defaults).
  const janusProcess = config.sfu.janus.launch
    ? new JanusProcess(janusUrl, config.dataDir, logFor('janus-process'))
    : undefined;
  // The site console, on a hub (docs/console.md).
  const consoleParts = siteConsole({
    config,
    broker,
    janusUrl,
    localAdminFile: localAdminFile(config.dataDir),
    logFor,
  });
  // Each camera's pipeline keeps its last clips.preRollSeconds of H.264 in a folder this owns (tmpfs).
  const preroll = new PreRoll(
    config.cameras,
    { root: preRollRoot(config), preRollSeconds: config.clips.preRollSeconds },
    logFor('preroll'),
  );
  const cameras = config.cameras.map((camera) => ({
    name: camera.name,
    camera: new Camera({
      camera,
      sfu: config.sfu,
      encoders,
      log: log.child({ service: 'camera', camera: camera.name }),
      mountpoint: janus?.mountpoint(camera.name),
      preroll: preroll.ring(camera.name),
    }),
  }));
  const streaming = () => cameras.filter(({ camera }) => camera.status().state === 'streaming').length;
  const cameraStates = new CameraStateReport({
    cameras,
    site,
    device,
    publisher: uplink,
    log: logFor('camera-state'),
  });
  const telemetry = new Telemetry({
    site,
    device,
    dataDir: config.dataDir,
    intervalMs: config.telemetry.intervalSeconds * 1000,
    publisher: uplink,
    stamp: () => uplink.stamp(),
    log: logFor('telemetry'),
  });

  // Panic clips: the store, delivery through the uplink, the panic service; then the LED and button.
  const clipStore = new ClipStore({
    dataDir: config.dataDir,
    limits: config.clips,
    log: logFor('clip-store'),
    hooks: { diskDanger: clipStoreAlerts({ site, device, publisher: uplink }) },
  });
  // Updates: the retained update state, the health report the update gate commits a slot on, the LAN
  // receiver's update-* verbs, and the LED pattern of an update or of first boot's refusal.
  const update = updateRoom(config, {
    publisher: uplink,
    stamp: () => uplink.stamp(),
    healthy: () => life.healthy(),
    unhealthy: () => services.filter((service) => !service.healthy()).map((service) => service.name),
    log: logFor('update'),
  });
  const openPin = config.gpio ? (deps.openPin ?? pinOpener(config.gpio)) : undefined;
  const led = statusLed({
    gpio: config.gpio,
    openPin,
    baseState: () =>
      update.led() ??
      ledBase({
        healthy: life.healthy(),
        buttonProblem: button?.problem() !== undefined,
        streaming: streaming() > 0,
      }),
    log: logFor('led'),
  });
  const delivery = new ClipDelivery({
    settings: { site, device, inFlightChunks: config.clips.inFlightChunks },
    store: clipStore,
    channel: uplink,
    log: logFor('clip-delivery'),
    events: { delivered: () => led.show('clip-delivered') },
  });
  const panic = new Panic({
    settings: {
      site,
      device,
      preRollSeconds: config.clips.preRollSeconds,
      postRollSeconds: config.clips.postRollSeconds,
      cameras: config.clips.cameras ?? config.cameras.map((camera) => camera.name),
    },
    publisher: uplink,
    source: new PreRollClipSource(preroll, logFor('clip-source')),
    store: clipStore,
    delivery,
    log: logFor('panic'),
    events: {
      alertSent: () => led.show('alert-sent'),
      alertAcked: (trigger, ms) => metrics?.panicAlert(trigger, ms),
    },
  });
  const button = panicButton({
    gpio: config.gpio,
    openPin,
    panic: (at) => panic.trigger('button', { at }),
    log: logFor('button'),
  });

  const commandVerbs = { ...verbs({ device, cameras, preroll, panic, delivery }), ...update.verbs };
  const commands = new Commands({
    site,
    device,
    channel: uplink,
    verbs: commandVerbs,
    log: logFor('commands'),
  });
  // A camera box's uplink listens at the hub; tools on the box (`outpost clip`) publish on its own
  // loopback broker, so the same verbs are answered there too. (A hub's uplink is its own broker.)
  const localCommands =
    config.role === 'camera'
      ? new Commands({
          site,
          device,
          channel: {
            publish: (topic, payload, options) => broker.publishLocal(topic, payload, options),
            stamp: () => uplink.stamp(),
            subscribe: (filter, handler) => broker.subscribeLocal(filter, handler),
          },
          verbs: commandVerbs,
          log: logFor('local-commands'),
        })
      : undefined;

  // Prometheus /metrics (docs/metrics.md): reads the subsystems when scraped.
  const metrics = boxMetrics({
    config,
    version: VERSION,
    sources: {
      broker,
      uplink,
      bridge,
      cameras: () => cameras.map(({ name, camera }) => ({ name, ...camera.status() })),
      clipStore,
    },
    log: logFor('metrics'),
  });

  // Start order is dependency order: the broker, then the uplink that publishes through it (or to the
  // hub); the encoder probe before the cameras that use its answer; the state report after the cameras
  // (so it stops first and can say `stopped`).
  const services: Service[] = [
    broker,
    // Before anything publishes an alert or telemetry on this hub's broker.
    ...(consoleParts ? [consoleParts.inbox, consoleParts.telemetry] : []),
    uplink,
    ...(bridge ? [bridge] : []),
    ...(consoleParts ? [consoleParts.archive] : []),
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
    ...(config.gpio?.led ? [led] : []),
    ...(button ? [button] : []),
    commands,
    ...(localCommands ? [localCommands] : []),
    ...(metrics ? [metrics] : []),
    // The page opens on a hub whose every subsystem is up.
    ...(consoleParts ? [consoleParts.server] : []),
    // Last: its health report for the update gate says every subsystem above has started.
    update.service,
  ];
  const life = lifecycle(services, log, config.shutdown.timeoutMs);
  return {
    ...life,
    services,
    panic,
    preroll,
    console: consoleParts?.server,
    async reload() {
      await broker.reloadIdentities();
      consoleParts?.server.endRevokedLogins();
    },
    summary() {
      const address = broker.address();
      const hub = uplink.connected() ? 'uplink connected' : `uplink offline, ${uplink.pending()} queued`;
      return `broker on ${address ? `${address.host}:${address.port}` : 'nothing'}; ${hub}; ${streaming()}/${cameras.length} cameras streaming to ${config.sfu.host}`;
    },
  };
}
