// The site bridge: the hub's outbound link to the operations centre's MQTT broker (Mosquitto, EMQX, any
// MQTT 3.1.1 broker). The hub dials out; the centre never connects into the site (DESIGN.md).
//
//   site broker ──(loopback, identity `centre`, persistent session)──► queue.ts (disk) ──► central broker
//   site broker ◄──(same client: cmd, chat)───────────────────────────────────────────── central broker
//
// Up: a loopback MQTT client of the hub's own broker, identity `centre` (console role, an in-memory
// credential), subscribes to the configured up topics with a persistent session, so what arrives while
// the bridge is stopped waits in the broker's store. Each message is acknowledged to the broker only
// once it is written to the bridge's on-disk queue; for QoS 1 while the link is down, once fsynced (while
// it is up, the fsync follows unless the centre took it first: queue.ts). The queue sends to the centre in
// arrival order: QoS 1 (retained for states), QoS 0 for telemetry, at most `inFlight` unacknowledged.
// A message leaves the queue only when the central broker acknowledged it; after a cut everything
// unacknowledged is sent again from the oldest (QoS 1 may deliver twice; payload ids dedupe).
//
// Down: the same loopback client publishes what the centre sends on the down topics, as `centre`, so the
// site broker's ACL and chat stamping apply (a console-role identity may send `cmd` and chat, nothing
// else). The central message is acknowledged only once the site broker has it.
//
// Clip chunks cross only on demand: a `cmd/clip-chunks` from the centre opens a window during which that
// clip's chunks cross (docs/bridge.md says why). Retain flags do not survive a 3.1.1 subscription, so
// retention at the centre follows the class: `state` is retained. Link state: `…/{hub}/bridge`,
// retained, on both brokers; the central copy's last will says `down`.
import { join } from 'node:path';
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { BridgeClass, Config } from '../config/schema.js';
import { readSecret } from '../config/secret.js';
import { OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { topicMatches } from '../mqtt/acl.js';
import { CENTRE_IDENTITY } from '../mqtt/ack-stamp.js';
import {
  ackInPayload,
  ackPayload,
  chatPayload,
  commandPayload,
  type BridgeStatePayload,
  type ChatPayload,
} from '../mqtt/contract.js';
import type { Publisher, Stamper } from '../mqtt/publisher.js';
import { sitePrefix, topics } from '../mqtt/topics.js';
import { BridgeQueue, type ClassCounts } from './queue.js';

/** An identity name (contract.ts): what a centre console account's name must be to cross down. */
const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

const BRIDGE_SECRET_HINT =
  'provision the hub (outpost-provision centre add-site, then bridge set and bundle) or fix the path';

/** The site broker identity the bridge uses; chat from the centre is stamped `from: centre`. */
export { CENTRE_IDENTITY };

export type BridgeConfig = Pick<Config, 'site' | 'device' | 'dataDir'> & {
  bridge: NonNullable<Config['bridge']>;
};

export interface BridgeDeps {
  config: BridgeConfig;
  /** The hub's own broker: its loopback listener and the `centre` credential (Broker.serviceCredential). */
  local: {
    address(): { host: string; port: number } | undefined;
    credential: { username: string; password: string };
  };
  /** The hub's uplink: publishes the local copy of the link state, and stamps it. */
  publisher: Publisher & { stamp: Stamper };
  log: Logger;
}

export interface BridgeStats {
  up: boolean;
  /** ms since the epoch when the link last went up or down; undefined before the first attempt ends. */
  since: number | undefined;
  queuedMessages: number;
  queuedBytes: number;
  maxBytes: number;
  dropped: ClassCounts;
  /** Acknowledged by the central broker since start. */
  forwarded: number;
  /** Carried from the centre to the site since start. */
  received: number;
  /** Connections to the central broker made since start. */
  connects: number;
}

/** Backoff between connection attempts: 1 s doubling to bridge.reconnectMaxSeconds, ±20 % jitter. */
const RETRY_MIN_MS = 1000;
/** Chat ids remembered to drop the second copy of a message matched by two filters. */
const SEEN_CHAT_IDS = 512;

export class Bridge implements Service {
  readonly name = 'bridge';
  private readonly prefix: string;
  private readonly stateTopic: string;
  private queue: BridgeQueue | undefined;
  private local: MqttClient | undefined;
  private central: MqttClient | undefined;
  /** +1 per central connection: callbacks of an earlier connection are ignored. */
  private generation = 0;
  private up = false;
  private since: number | undefined;
  private inFlight = 0;
  private pumping = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private stateTimer: NodeJS.Timeout | undefined;
  private lastStateKey = '';
  private lastFailure = '';
  private stopped = true;
  private forwarded = 0;
  private received = 0;
  private connects = 0;
  private echoes = 0;
  private readonly seenChat = new Set<string>();
  /** On-demand clip windows: local filter → until (ms since the epoch), and their timers. */
  private readonly windows = new Map<string, { until: number; timer: NodeJS.Timeout }>();

  constructor(private readonly deps: BridgeDeps) {
    this.prefix = sitePrefix(deps.config.site);
    this.stateTopic = topics.bridge(deps.config.site, deps.config.device);
  }

  async start(): Promise<void> {
    const { config, log } = this.deps;
    this.stopped = false;
    const dir = join(config.dataDir, 'bridge');
    const queue = new BridgeQueue({
      directory: dir,
      maxBytes: config.bridge.maxQueueBytes,
      onWriteError: (error) =>
        log.error(
          { err: error },
          'bridge store: a write failed (disk full or I/O error); the message is kept in memory and still sent',
        ),
      onQueued: () => void this.pump(),
    });
    try {
      await queue.open();
    } catch (error) {
      throw new OutpostError('START_FAILED', `cannot open the bridge store in ${dir}`, {
        hint: 'is another outpost daemon running on this data dir? check dataDir and its permissions',
        cause: error,
      });
    }
    this.queue = queue;
    const centralOptions = await this.centralOptions();
    await this.connectLocal();
    await this.restoreWindows();
    this.log('info', { url: centralOptions.href, queued: queue.size, bytes: queue.bytes }, 'bridge starting');
    this.connectCentral(centralOptions);
    this.publishState(true);
    this.stateTimer = setInterval(() => this.publishState(false), config.bridge.stateIntervalSeconds * 1000);
    this.stateTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.stateTimer);
    for (const { timer } of this.windows.values()) clearTimeout(timer);
    this.windows.clear();
    const { central, local, queue } = this;
    this.central = undefined;
    this.local = undefined;
    this.generation += 1;
    if (this.up) this.setUp(false);
    this.publishState(true);
    await Promise.all([
      central ? new Promise<void>((resolve) => central.end(true, {}, () => resolve())) : undefined,
      local ? new Promise<void>((resolve) => local.end(true, {}, () => resolve())) : undefined,
    ]);
    this.queue = undefined;
    await queue?.close();
  }

  healthy(): boolean {
    // A link that is down is the situation the bridge exists for, not a fault.
    return !this.stopped && this.queue !== undefined;
  }

  stats(): BridgeStats {
    const queue = this.queue?.stats();
    return {
      up: this.up,
      since: this.since,
      queuedMessages: queue?.messages ?? 0,
      queuedBytes: queue?.bytes ?? 0,
      maxBytes: this.deps.config.bridge.maxQueueBytes,
      dropped: queue?.dropped ?? zeroCounts(),
      forwarded: this.forwarded,
      received: this.received,
      connects: this.connects,
    };
  }

  // ── up: the site broker → the queue ──────────────────────────────────────────────────────────────

  private async connectLocal(): Promise<void> {
    const address = this.deps.local.address();
    if (!address)
      throw new OutpostError('START_FAILED', 'the bridge needs the local broker, which is not listening');
    const { username, password } = this.deps.local.credential;
    const client = connect({
      host: address.host,
      port: address.port,
      protocol: 'mqtt',
      protocolVersion: 4,
      clientId: `${username}.bridge`,
      username,
      password,
      clean: false,
      keepalive: 30,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
    });
    // The PUBACK to the site broker waits for this: the message is in the bridge's store first.
    client.handleMessage = (packet, done) => {
      this.fromSite(packet).then(
        () => done(),
        (error: unknown) => {
          // Not acknowledged: the site broker keeps it in the session and sends it again after the
          // next reconnect.
          this.log('error', { err: error, topic: packet.topic }, 'bridge could not store a message');
          done(error instanceof Error ? error : new Error(String(error)));
        },
      );
    };
    client.on('error', (error) => this.log('warn', { err: error }, 'bridge: local broker connection error'));
    client.on('connect', () => noDelay(client));
    this.local = client;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the local broker did not accept the bridge in 10 s')),
        10_000,
      );
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const filters = this.deps.config.bridge.up.map(({ topic }) => `${this.prefix}/${topic}`);
    await client.subscribeAsync(filters, { qos: 1 }).then((granted) => {
      const refused = granted.filter((grant) => grant.qos === 128).map((grant) => grant.topic);
      if (refused.length > 0) this.log('error', { refused }, 'bridge: the site broker refused up topics');
    });
  }

  /** Classify and queue one message from the site broker; resolves once it may be acknowledged. */
  private async fromSite(packet: IPublishPacket): Promise<void> {
    const queue = this.queue;
    if (!queue) throw new Error('the bridge is stopped');
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (topic === this.stateTopic) return; // the link state crosses on its own (publishState)
    const cls = this.classify(topic);
    if (!cls) return;
    if (cls === 'chat') {
      const chat = parseChat(payload);
      // Stamped `centre` here: it came from the centre, which has it.
      if (!chat || chat.from === CENTRE_IDENTITY) return;
      if (this.seenBefore(chat.id)) return;
    }
    if (isAck(topic) && parseAck(payload)?.by === CENTRE_IDENTITY) return; // the centre's own, back
    // The site broker's PUBACK waits until the message is written (a kill -9 of the daemon cannot lose
    // it). While the link is up its fsync follows only if the centre has not taken it within the
    // queue's SYNC_DELAY_MS: MQTT.js hands over one message at a time, and an fsync each would space a
    // burst of alerts tens of ms apart on an SD card. While the link is down it is fsynced first
    // (docs/bridge.md, Store and forward, says what a power cut can still take).
    await queue.put(
      { topic, payload, qos: cls === 'telemetry' ? 0 : 1, retain: cls === 'state', cls },
      this.up ? 'later' : 'now',
    );
  }

  private classify(topic: string): BridgeClass | undefined {
    for (const filter of this.windows.keys()) if (topicMatches(filter, topic)) return 'chunk';
    const rest = topic.startsWith(`${this.prefix}/`) ? topic.slice(this.prefix.length + 1) : undefined;
    if (rest === undefined) return undefined;
    return this.deps.config.bridge.up.find((entry) => topicMatches(entry.topic, rest))?.class;
  }

  // ── the queue → the central broker ───────────────────────────────────────────────────────────────

  private async centralOptions(): Promise<IClientOptions & { href: string }> {
    const { bridge, site } = this.deps.config;
    const url = new URL(bridge.url);
    const password = bridge.passwordFile
      ? await readSecret(bridge.passwordFile, 'bridge.passwordFile', BRIDGE_SECRET_HINT)
      : undefined;
    const ca = bridge.ca ? await readSecret(bridge.ca, 'bridge.ca', BRIDGE_SECRET_HINT) : undefined;
    const cert = bridge.cert ? await readSecret(bridge.cert, 'bridge.cert', BRIDGE_SECRET_HINT) : undefined;
    const key = bridge.key ? await readSecret(bridge.key, 'bridge.key', BRIDGE_SECRET_HINT) : undefined;
    const tls = url.protocol === 'mqtts:';
    return {
      href: `${url.protocol}//${url.host}`,
      protocol: tls ? 'mqtts' : 'mqtt',
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || (tls ? 8883 : 1883)),
      protocolVersion: 4,
      clientId: bridge.clientId ?? `outpost-bridge-${site}`,
      // The centre queues what it sends down (cmd, chat) while the link is down.
      clean: false,
      keepalive: bridge.keepAliveSeconds,
      // One client per connection; the bridge reconnects itself (backoff) and resends from its store.
      reconnectPeriod: 0,
      connectTimeout: 15_000,
      ...(bridge.username ? { username: bridge.username } : {}),
      ...(password !== undefined ? { password } : {}),
      // MQTT.js sends the host name as SNI itself (never an IP address: RFC 6066 §3).
      ...(tls ? { rejectUnauthorized: true, minVersion: 'TLSv1.2' as const } : {}),
      ...(ca ? { ca: [ca] } : {}),
      ...(cert && key ? { cert, key } : {}),
    };
  }

  private connectCentral(options: IClientOptions & { href: string }): void {
    if (this.stopped) return;
    const generation = ++this.generation;
    const will = this.statePayload('down', null);
    const client = connect({
      ...options,
      will: {
        topic: this.stateTopic,
        payload: Buffer.from(JSON.stringify(will)),
        qos: 1,
        retain: true,
      },
    });
    client.handleMessage = (packet, done) => {
      this.fromCentre(packet).then(
        () => done(),
        (error: unknown) => {
          // Not acknowledged: the central broker sends it again on the next connection.
          this.log(
            'warn',
            { err: error, topic: packet.topic },
            'bridge: a message from the centre was not delivered to the site',
          );
          done(error instanceof Error ? error : new Error(String(error)));
        },
      );
    };
    this.central = client;
    let connected = false;
    client.on('connect', (connack) => {
      if (generation !== this.generation) return;
      noDelay(client);
      connected = true;
      this.connects += 1;
      this.retryMs = RETRY_MIN_MS;
      this.lastFailure = '';
      const filters = this.deps.config.bridge.down.map((topic) => `${this.prefix}/${topic}`);
      client.subscribe(filters, { qos: 1 }, (error, granted) => {
        const refused = (granted ?? []).filter((grant) => grant.qos === 128).map((grant) => grant.topic);
        if (error || refused.length > 0)
          this.log(
            'error',
            { err: error, refused },
            "bridge: the central broker refused down topics (check the site's ACL at the centre)",
          );
      });
      this.setUp(true);
      this.log(
        'info',
        { url: options.href, sessionPresent: connack.sessionPresent, queued: this.queue?.size ?? 0 },
        'bridge link up',
      );
      this.publishCentralState();
      void this.pump();
    });
    client.on('error', (error) => {
      if (generation !== this.generation) return;
      const reason = error.message;
      if (reason !== this.lastFailure) {
        this.lastFailure = reason;
        this.log(
          'warn',
          { err: error, url: options.href, hint: failureHint(error) },
          'bridge: central broker refused or unreachable',
        );
      }
    });
    client.on('close', () => {
      if (generation !== this.generation) return;
      this.generation += 1; // late callbacks of this connection are ignored from here on
      this.inFlight = 0;
      this.queue?.rewind();
      // What was taken while the link was up and is still here must now survive a power cut too.
      void this.queue?.sync();
      if (connected || this.up) {
        this.setUp(false);
        this.log(
          'warn',
          { url: options.href, queued: this.queue?.size ?? 0 },
          'bridge link down; storing on disk',
        );
      }
      client.end(true);
      if (this.stopped) return;
      const wait = this.retryMs * (0.8 + 0.4 * Math.random());
      this.retryMs = Math.min(this.deps.config.bridge.reconnectMaxSeconds * 1000, this.retryMs * 2);
      this.retryTimer = setTimeout(() => this.connectCentral(options), wait);
    });
  }

  /** Send what is queued, in order, keeping at most `inFlight` unacknowledged. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const limit = this.deps.config.bridge.inFlight;
      for (;;) {
        const { central, queue } = this;
        const generation = this.generation;
        if (!central || !queue || !this.up || this.inFlight >= limit) return;
        const message = await queue.next();
        if (!message) return;
        if (generation !== this.generation || this.central !== central) {
          queue.rewind();
          return;
        }
        this.inFlight += 1;
        central.publish(
          message.topic,
          message.payload,
          { qos: message.qos, retain: message.retain },
          (error) => {
            if (generation !== this.generation) return;
            this.inFlight -= 1;
            if (!error) {
              queue.ack(message.seq);
              this.forwarded += 1;
            }
            void this.pump();
          },
        );
      }
    } finally {
      this.pumping = false;
    }
    // A message queued (or a new link) while this round was reading from disk: go again.
    if (this.up && this.inFlight < this.deps.config.bridge.inFlight && this.queue?.hasNext())
      void this.pump();
  }

  // ── down: the central broker → the site broker ──────────────────────────────────────────────────

  private async fromCentre(packet: IPublishPacket): Promise<void> {
    const local = this.local;
    if (!local) throw new Error('the bridge is stopped');
    const topic = packet.topic;
    const rest = topic.startsWith(`${this.prefix}/`) ? topic.slice(this.prefix.length + 1) : undefined;
    if (rest === undefined || !this.deps.config.bridge.down.some((filter) => topicMatches(filter, rest)))
      return;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // A chat message or an acknowledgement stamped by a site broker went up from here and is coming
    // back down: drop the echo (the centre's own are unstamped: `{text}`, `{}` or `{note}`).
    if ((rest.startsWith('chat/') && parseChat(payload)) || (isAck(topic) && parseAck(payload))) {
      this.echoes += 1;
      return;
    }
    if (isAck(topic) && namesOperator(payload)) {
      // Only …/ack/{name} names an operator: the centre's ACL ties that topic to the account. On the
      // plain …/ack any centre account could write any name.
      this.log(
        'warn',
        { topic },
        'an acknowledgement from the centre naming an operator on the plain …/ack: dropped',
      );
      return;
    }
    const named = /^(inbox\/[^/]+\/[^/]+\/[^/]+\/ack)\/([^/]+)$/.exec(rest);
    if (named?.[1] && named[2]) {
      await this.operatorAck(`${this.prefix}/${named[1]}`, named[2], payload);
      return;
    }
    const verb = /^([a-z0-9-]+)\/cmd\/clip-chunks$/.exec(rest);
    if (verb?.[1]) await this.openClipWindow(verb[1], payload);
    this.received += 1;
    await local.publishAsync(topic, payload, { qos: 1 });
  }

  /**
   * `…/ack/{operator}` from the centre, whose ACL lets only that console account write it: published on
   * the site's own `…/ack` naming the operator, which only this identity may do (mqtt/ack-stamp.ts).
   */
  private async operatorAck(topic: string, operator: string, payload: Buffer): Promise<void> {
    let body: unknown = {};
    try {
      const text = payload.toString('utf8');
      if (text.trim() !== '') body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const parsed = ackInPayload.safeParse(body);
    if (!parsed.success || parsed.data.operator !== undefined || !NAME.test(operator)) {
      this.log(
        'warn',
        { topic, operator },
        'bridge: a centre acknowledgement that is not {} or {"note"}; dropped',
      );
      return;
    }
    this.received += 1;
    await this.local?.publishAsync(topic, JSON.stringify({ ...parsed.data, operator }), { qos: 1 });
  }

  /** The centre asked for chunks of a clip: let that clip's chunks cross for a while. */
  private async openClipWindow(device: string, payload: Buffer): Promise<void> {
    const seconds = this.deps.config.bridge.clipChunkWindowSeconds;
    let clipId: unknown;
    try {
      clipId = commandPayload.parse(JSON.parse(payload.toString())).args.clipId;
    } catch {
      return; // the box answers a bad command itself
    }
    if (seconds === 0 || typeof clipId !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(clipId)) return;
    const filter = `${this.prefix}/${device}/clip/${clipId}/chunk/+`;
    const until = Date.now() + seconds * 1000;
    const known = this.windows.get(filter);
    if (!known) await this.local?.subscribeAsync(filter, { qos: 1 });
    await this.queue?.saveWindow(filter, until);
    this.armWindow(filter, until);
    if (!known) this.log('info', { filter, seconds }, 'bridge: clip chunks cross on demand');
  }

  private armWindow(filter: string, until: number): void {
    const known = this.windows.get(filter);
    if (known) clearTimeout(known.timer);
    const timer = setTimeout(() => void this.closeWindow(filter), Math.max(0, until - Date.now()));
    timer.unref();
    this.windows.set(filter, { until, timer });
  }

  private async closeWindow(filter: string): Promise<void> {
    this.windows.delete(filter);
    await this.local?.unsubscribeAsync(filter).catch(() => undefined);
    await this.queue?.saveWindow(filter, undefined);
  }

  /** Windows opened by an earlier run: re-armed, or closed (unsubscribed) when they ran out meanwhile. */
  private async restoreWindows(): Promise<void> {
    for (const [filter, until] of (await this.queue?.windows()) ?? []) {
      if (until > Date.now()) this.armWindow(filter, until);
      else await this.closeWindow(filter);
    }
  }

  // ── link state ───────────────────────────────────────────────────────────────────────────────────

  private setUp(up: boolean): void {
    this.up = up;
    this.since = Date.now();
    this.publishState(true);
  }

  private statePayload(state: 'up' | 'down', since: number | null): BridgeStatePayload {
    const stats = this.stats();
    const url = new URL(this.deps.config.bridge.url);
    return {
      ...this.deps.publisher.stamp(),
      device: this.deps.config.device,
      state,
      since,
      broker: url.host,
      queued: { messages: stats.queuedMessages, bytes: stats.queuedBytes },
      maxBytes: stats.maxBytes,
      dropped: stats.dropped,
      forwarded: stats.forwarded,
    };
  }

  /** Retained on the site broker (through the uplink) and, while up, on the central broker. */
  private publishState(force: boolean): void {
    const stats = this.stats();
    const key = JSON.stringify([stats.up, stats.queuedMessages, stats.dropped, stats.forwarded]);
    if (!force && key === this.lastStateKey) return;
    this.lastStateKey = key;
    const payload = this.statePayload(this.up ? 'up' : 'down', this.since ?? null);
    this.deps.publisher.publish(this.stateTopic, payload, { qos: 1, retain: true });
    if (this.up) this.publishCentralState(payload);
  }

  private publishCentralState(payload = this.statePayload('up', this.since ?? null)): void {
    this.central?.publish(
      this.stateTopic,
      JSON.stringify(payload),
      { qos: 1, retain: true },
      () => undefined,
    );
  }

  private seenBefore(id: string): boolean {
    if (this.seenChat.has(id)) return true;
    this.seenChat.add(id);
    if (this.seenChat.size > SEEN_CHAT_IDS) {
      const oldest = this.seenChat.values().next().value;
      if (oldest !== undefined) this.seenChat.delete(oldest);
    }
    return false;
  }

  private log(level: 'info' | 'warn' | 'error', fields: object, message: string): void {
    this.deps.log[level](fields, message);
  }
}

/**
 * MQTT is request/acknowledge with small packets: with Nagle's algorithm each message written while an
 * earlier one is unacknowledged waits for that ACK (up to a delayed-ACK timeout, 40 ms on Linux), which
 * spaced the alerts of a burst tens of ms apart on their way to the centre. MQTT.js leaves it on.
 */
function noDelay(client: MqttClient): void {
  (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
}

function isAck(topic: string): boolean {
  return topic.endsWith('/ack') && topic.split('/')[3] === 'inbox';
}

/** An inbox acknowledgement as a site broker stamps it (contract ackPayload), or undefined. */
function parseAck(payload: Buffer): { by: string } | undefined {
  try {
    const parsed = ackPayload.safeParse(JSON.parse(payload.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** A chat message as a site broker stamps it (contract chatPayload), or undefined. */
function parseChat(payload: Buffer): ChatPayload | undefined {
  try {
    const parsed = chatPayload.safeParse(JSON.parse(payload.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function zeroCounts(): ClassCounts {
  return { telemetry: 0, chunk: 0, reply: 0, state: 0, manifest: 0, alert: 0, chat: 0 };
}

/** What to check for a refused or failed connection to the central broker. */
function failureHint(error: Error): string {
  const code = (error as Error & { code?: number | string }).code;
  if (code === 4 || code === 5)
    return "the central broker refused the site's credentials: check bridge.username and bridge.passwordFile (or the client certificate) against the centre's password file (outpost-provision centre add-site)";
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT')
    return 'the central broker is not reachable: the link is down or bridge.url is wrong; messages wait on disk';
  if (/certificate|self.signed|unable to verify/i.test(error.message))
    return "the central broker's certificate is not signed by bridge.ca (or its name is not bridge.url's host)";
  return 'messages wait on disk until the central broker accepts the bridge';
}

/** The hub's bridge when its config has a `bridge` section (hub role only), with its `centre` identity. */
export function siteBridge(deps: {
  config: Pick<Config, 'site' | 'device' | 'dataDir' | 'bridge'>;
  broker: {
    address(): { host: string; port: number } | undefined;
    serviceCredential(name: string, role: 'console'): { username: string; password: string };
  };
  publisher: BridgeDeps['publisher'];
  log: Logger;
}): Bridge | undefined {
  const { config, broker } = deps;
  if (!config.bridge) return undefined;
  return new Bridge({
    config: { ...config, bridge: config.bridge },
    // Registered before the broker starts, so its persistent session is kept (Broker.serviceCredential).
    local: {
      address: () => broker.address(),
      credential: broker.serviceCredential(CENTRE_IDENTITY, 'console'),
    },
    publisher: deps.publisher,
    log: deps.log,
  });
}

/** Whether an acknowledgement's payload carries an `operator` (JSON object with that key). */
function namesOperator(payload: Buffer): boolean {
  try {
    const body: unknown = JSON.parse(payload.toString('utf8'));
    return typeof body === 'object' && body !== null && 'operator' in body;
  } catch {
    return false;
  }
}
