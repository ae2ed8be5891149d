// The daemon's own MQTT client (MQTT.js): everything the box publishes goes through here. In hub role
// it connects to its own broker on loopback; in camera role to the hub's TLS listener. It keeps a
// persistent session and an on-disk outgoing store (level-store.ts), so alerts and chat published while
// the hub is unreachable, or across a daemon restart, arrive when it returns, in order. `status` is
// retained, with a last will of `offline`. Any MQTT 3.1.1 broker works as the hub.
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { readSecret } from '../config/secret.js';
import { OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { VERSION } from '../version.js';
import type { StatusPayload } from './contract.js';
import type { Publisher, PublishOptions, Stamp } from './publisher.js';
import { LevelStore, StoreMessageIds } from './level-store.js';
import { topicMatches } from './acl.js';
import { topics } from './topics.js';

const UPLINK_SECRET_HINT = 'provision the box (outpost-provision bundle) or fix the path';

/** Where to connect when the config names no uplink: the box's own broker, as itself. */
export interface LocalBroker {
  address(): { host: string; port: number } | undefined;
  selfCredential(): { username: string; password: string };
}

export type MessageHandler = (topic: string, payload: Buffer) => void;

export class Uplink implements Service, Publisher {
  readonly name = 'uplink';
  readonly bootId = randomUUID();
  private seq = 0;
  private client: MqttClient | undefined;
  private store: LevelStore | undefined;
  private connectedOnce = false;
  private online = false;
  /** QoS 0 messages (telemetry) not sent because the hub was away (for /metrics). */
  private droppedOffline = 0;
  private readonly handlers: Array<{ filter: string; handler: MessageHandler }> = [];

  constructor(
    private readonly config: Config,
    private readonly local: LocalBroker,
    private readonly log: Logger,
  ) {}

  /** Wall time, boot id and per-boot counter for the next message (DESIGN.md: time without the internet). */
  stamp(): Stamp {
    this.seq += 1;
    return { at: Date.now(), bootId: this.bootId, seq: this.seq };
  }

  /** Messages waiting in the on-disk store for the hub's acknowledgement. */
  pending(): number {
    return this.store?.size ?? 0;
  }

  /** What /metrics reports: the on-disk store, and QoS 0 messages not sent while offline. */
  stats(): { queuedMessages: number; queuedBytes: number; droppedOffline: number } {
    return {
      queuedMessages: this.store?.size ?? 0,
      queuedBytes: this.store?.bytes ?? 0,
      droppedOffline: this.droppedOffline,
    };
  }

  /** Connected, the stored backlog resent, and `online` published. */
  connected(): boolean {
    return this.online && this.client?.connected === true;
  }

  async start(): Promise<void> {
    const options = await this.clientOptions();
    const store = new LevelStore(join(this.config.dataDir, 'uplink'), true, (error, messageId) =>
      this.log.error(
        { err: error, messageId },
        'uplink store: a message could not be written to disk (sent anyway; lost if the daemon stops before the hub acknowledges it)',
      ),
    );
    try {
      await store.open();
    } catch (error) {
      throw new OutpostError(
        'START_FAILED',
        `cannot open the uplink store in ${join(this.config.dataDir, 'uplink')}`,
        {
          hint: 'is another outpost daemon running on this data dir? check dataDir and its permissions',
          cause: error,
        },
      );
    }
    this.store = store;
    // Message ids held in the store stay reserved until their packets are resent (level-store.ts).
    const ids = new StoreMessageIds(store);
    const client = connect({ ...options, outgoingStore: store, messageIdProvider: ids });
    this.client = client;
    // One line per failed attempt: over TLS, MQTT.js reports a refused connection twice (the TLS
    // socket's error and the stream's), and only the first says anything.
    let errorLogged = false;
    client.on('reconnect', () => (errorLogged = false));
    client.on('connect', () => {
      errorLogged = false;
      // MQTT.js emits `connect` after it has resent what the store held (level-store.ts).
      this.log.info(
        { url: options.href, resent: store.takeReplayed(), firstTime: !this.connectedOnce },
        'uplink connected',
      );
      this.connectedOnce = true;
      this.online = true;
      this.publish(topics.status(this.config.site, this.config.device), this.statusPayload('online'), {
        qos: 1,
        retain: true,
      });
    });
    client.on('message', (topic, payload) => {
      for (const { filter, handler } of this.handlers)
        if (topicMatches(filter, topic)) handler(topic, payload);
    });
    for (const { filter } of this.handlers) this.subscribeOnHub(filter);
    client.on('close', () => (this.online = false));
    client.on('offline', () =>
      this.log.warn({ url: options.href, pending: store.size }, 'uplink offline; storing messages on disk'),
    );
    client.on('error', (error) => {
      if (errorLogged) return;
      errorLogged = true;
      this.log.warn({ err: error, url: options.href }, 'uplink error');
    });
    // start() does not wait for the hub: a camera box must stream and store alerts while the hub is away.
  }

  publish(topic: string, payload: object, options: PublishOptions): void {
    const client = this.client;
    if (!client) {
      this.log.error({ topic }, 'publish before the uplink started: dropped');
      return;
    }
    // QoS 0 (telemetry) is not worth queueing while offline: the next sample replaces it.
    if (options.qos === 0 && !client.connected) {
      this.droppedOffline += 1;
      return;
    }
    client.publish(
      topic,
      JSON.stringify(payload),
      { qos: options.qos, retain: options.retain ?? false },
      (error) => {
        if (error) this.log.warn({ err: error, topic }, 'uplink publish failed');
      },
    );
  }

  /**
   * Publish at QoS 1 and resolve once the hub has acknowledged it (PUBACK). A Buffer goes as raw bytes
   * (clip chunks: no JSON, no base64), an object as JSON. Like every QoS 1 message it passes through the
   * on-disk store first. While the hub is away the promise waits; it never settles if the uplink stops
   * first (the packet stays in the store and is resent by the next run), so callers race it with their
   * own stop.
   */
  publishAcked(topic: string, payload: Buffer | object): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error('the uplink is not running'));
    const bytes = Buffer.isBuffer(payload) ? payload : JSON.stringify(payload);
    return new Promise((resolve, reject) => {
      client.publish(topic, bytes, { qos: 1 }, (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * Receive messages matching `filter` at QoS 1. The session is persistent, so messages sent while the
   * box was away are delivered when it returns. Register before start() or after; both work.
   */
  subscribe(filter: string, handler: MessageHandler): void {
    this.handlers.push({ filter, handler });
    if (this.client) this.subscribeOnHub(filter);
  }

  private subscribeOnHub(filter: string): void {
    // MQTT.js queues this while offline and re-subscribes after each reconnect. A SUBSCRIBE queued
    // while the hub is away is called back with "Connection closed" at the first failed attempt, yet
    // sent at the connect: only a refusal in the SUBACK (0x80) means the hub said no.
    this.client?.subscribe(filter, { qos: 1 }, (error, granted) => {
      if (granted?.some((grant) => grant.qos === 128)) {
        this.log.error({ filter }, "uplink subscription refused by the hub (check this identity's ACL)");
      } else if (error) {
        this.log.debug({ reason: error.message, filter }, 'uplink subscription waits for the hub');
      }
    });
  }

  async stop(): Promise<void> {
    const { client, store } = this;
    this.client = undefined;
    this.store = undefined;
    if (client) {
      if (client.connected) {
        // A clean goodbye: say offline ourselves (the will fires only on an unclean end).
        await new Promise<void>((resolve) => {
          const payload = JSON.stringify(this.statusPayload('offline'));
          const topic = topics.status(this.config.site, this.config.device);
          client.publish(topic, payload, { qos: 1, retain: true }, () => resolve());
          setTimeout(resolve, 1000).unref();
        });
      }
      if (store) await settle(client, store, SETTLE_MS);
      // Forced: the socket goes at once, then MQTT.js closes the stores (ours after its queued writes)
      // and only then calls back. (end(false) waits for every acknowledgement without a bound, and a
      // second end() during that wait returns at once without ending anything: the store was closed
      // under a live client and acknowledged packets stayed in it, to be sent twice.)
      await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    }
    if (store) await new Promise<void>((resolve) => store.close(() => resolve()));
  }

  healthy(): boolean {
    // Disconnected from the hub is a state the uplink handles (it stores and retries), not a fault.
    return this.client !== undefined;
  }

  private statusPayload(state: StatusPayload['state']): StatusPayload {
    return { ...this.stamp(), state, device: this.config.device, role: this.config.role, version: VERSION };
  }

  private async clientOptions(): Promise<IClientOptions & { href: string }> {
    const { uplink, site, device } = this.config;
    const will = {
      topic: topics.status(site, device),
      payload: Buffer.from(JSON.stringify(this.statusPayload('offline'))),
      qos: 1 as const,
      retain: true,
    };
    const common = {
      clientId: `${device}.uplink`,
      clean: false,
      keepalive: 30,
      reconnectPeriod: 2000,
      connectTimeout: 10_000,
      protocolVersion: 4 as const,
      will,
    };
    if (!uplink) {
      const address = this.local.address();
      if (!address)
        throw new OutpostError('START_FAILED', 'the uplink needs the local broker, which is not listening');
      const { username, password } = this.local.selfCredential();
      const href = `mqtt://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
      return {
        ...common,
        href,
        host: address.host,
        port: address.port,
        protocol: 'mqtt',
        username,
        password,
      };
    }
    const password = await readSecret(uplink.passwordFile, 'uplink.passwordFile', UPLINK_SECRET_HINT);
    const ca = uplink.ca ? await readSecret(uplink.ca, 'uplink.ca', UPLINK_SECRET_HINT) : undefined;
    const cert = uplink.cert ? await readSecret(uplink.cert, 'uplink.cert', UPLINK_SECRET_HINT) : undefined;
    const key = uplink.key ? await readSecret(uplink.key, 'uplink.key', UPLINK_SECRET_HINT) : undefined;
    const url = new URL(uplink.url);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1'); // an IPv6 address without its brackets
    return {
      ...common,
      href: uplink.url,
      protocol: url.protocol === 'mqtts:' ? 'mqtts' : 'mqtt',
      host,
      port: Number(url.port || (url.protocol === 'mqtts:' ? 8883 : 1883)),
      username: uplink.username,
      password,
      // No servername for an IP address: SNI carries host names only (RFC 6066 §3; Node warns,
      // DEP0123); the certificate is still checked against the address.
      ...(ca ? { ca: [ca], rejectUnauthorized: true, ...(isIP(host) ? {} : { servername: host }) } : {}),
      ...(cert && key ? { cert, key } : {}),
    };
  }
}

/** How long stop() waits for acknowledgements in flight (shutdown.timeoutMs bounds the whole stop). */
const SETTLE_MS = 1500;

/**
 * Wait, at most `ms`, until every packet sent has been acknowledged and its removal from the store is
 * on disk, so that nothing the hub acknowledged is left in the store to be sent again by the next run.
 * Packets still waiting in the store when time is up stay there and are sent by the next run.
 */
async function settle(client: MqttClient, store: LevelStore, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0 || !client.connected) return;
    if (Object.keys(client.outgoing).length > 0) await nextPacket(client, left);
    else if (store.busy) await Promise.race([store.flushed(), delay(left)]);
    else return;
  }
}

/**
 * The next packet from the hub has been handled (or the connection closed, or `ms` passed). MQTT.js
 * emits 'outgoingEmpty' only once end() has begun, so settle() checks again after each packet.
 */
function nextPacket(client: MqttClient, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('packetreceive', handled);
      client.off('close', done);
      resolve();
    };
    // 'packetreceive' comes before MQTT.js handles the packet: look after it.
    const handled = (): void => void setImmediate(done);
    const timer = setTimeout(done, ms);
    client.on('packetreceive', handled);
    client.on('close', done);
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
