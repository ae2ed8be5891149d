// The embedded MQTT broker: Aedes with its listeners, its on-disk store and Outpost's policy, wired in
// one place. Each concern is a room under mqtt/broker/:
//   listeners.ts       loopback TCP, TLS and secure WebSocket listeners; connection limits
//   framing.ts         packet-size guard on the byte stream; PUBACKs held until the message is stored
//   authentication.ts  who a client is (password, certificate, local credentials) and its client id
//   login-gate.ts      scrypt checks a few at a time, in turn by address; failure backoff
//   publish-policy.ts  publish rate, ACL, retain on events, stamping hooks (chat-hook.ts, ack-hook.ts),
//                      stale wills
//   read-policy.ts     what a client may subscribe to and receive
//   revocation.ts      identities reloaded: clients and persisted sessions brought in line
//   persistence.ts     the LevelDB store (aedes-persistence-level) and its wrappers
//   aedes.ts           Aedes itself, and every reach into its private state
// Retained messages, persistent sessions and their queued QoS 1/2 messages live on disk
// (dataDir/broker), so they survive a restart and a kill -9. docs/mqtt.md describes the whole.
import { mkdir } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Service } from '../lifecycle/service.js';
import type { Identity, Role } from './identities.js';
import { AckHook } from './broker/ack-hook.js';
import {
  busBacklog,
  connectedClient,
  connectedClients,
  createAedes,
  prepareClient,
  useFastParser,
  type Aedes,
} from './broker/aedes.js';
import { Authentication } from './broker/authentication.js';
import { ChatHook } from './broker/chat-hook.js';
import { zeroCounters, type BrokerCounters } from './broker/counters.js';
import { GuardedConnection } from './broker/framing.js';
import { Listeners, type ListenerKind } from './broker/listeners.js';
import { closeStore, openStore, type OpenStore } from './broker/persistence.js';
import { PublishPolicy } from './broker/publish-policy.js';
import { ReadPolicy } from './broker/read-policy.js';
import { Revocation } from './broker/revocation.js';

export type { BrokerCounters } from './broker/counters.js';
import type { StampHook } from './broker/publish-policy.js';
export type { StampHook, StampInput, StampOutcome } from './broker/publish-policy.js';

export type BrokerConfig = Pick<Config, 'broker' | 'site' | 'device' | 'dataDir'>;

/**
 * Aedes reads every client as fast as the socket delivers, whatever the bus has queued: a flood of
 * QoS 0 publishes toward a slower subscriber piles up in memory. Past this many queued messages, the
 * broker stops reading from clients until the queue is back under it, so TCP pushes back on the
 * publishers instead (what Mosquitto does).
 */
const BUS_BACKLOG = 2000;

export class Broker implements Service {
  readonly name = 'broker';
  readonly counters: BrokerCounters = zeroCounters();
  private aedes: Aedes | undefined;
  private store: OpenStore | undefined;
  /** This run's broker id, kept after stop(): a will published while stopping is this run's. */
  private runId: string | undefined;
  private readonly listeners: Listeners;
  private readonly auth: Authentication;
  private readonly publishing: PublishPolicy;
  private readonly reading: ReadPolicy;
  private readonly revocation: Revocation;
  private chat: ChatHook | undefined;

  constructor(
    private readonly config: BrokerConfig,
    private readonly log: Logger,
  ) {
    const { site } = config;
    const counters = this.counters;
    this.listeners = new Listeners({
      settings: config.broker,
      log,
      onConnection: (connection) => {
        const client = this.aedes?.handle(connection);
        if (client) useFastParser(client);
      },
      admit: () => this.aedes === undefined || busBacklog(this.aedes) < BUS_BACKLOG,
      onFramingError: () => (counters.limitDisconnects += 1),
    });
    this.auth = new Authentication({
      config,
      counters,
      log,
      connectionOf: (connection) => this.listeners.connectionOf(connection),
      holderOf: (clientId) => {
        const current = this.aedes ? connectedClient(this.aedes, clientId) : undefined;
        return current ? this.auth.identity(current) : undefined;
      },
      publishRefusal: (identity, topic) => this.publishing.refusal(identity, topic),
      onAccepted: (client, identity) => {
        prepareClient(client, this.reading.forward);
        this.reading.accepted(client, identity);
        this.publishing.accepted(client);
      },
    });
    const identityOf = this.auth.identity.bind(this.auth);
    this.publishing = new PublishPolicy({
      site,
      maxPublishRate: config.broker.limits.maxPublishRate,
      counters,
      log,
      identityOf,
      lookup: (name) => this.auth.lookup(name),
      clientIdOwner: (clientId) => this.auth.clientIdOwner(clientId),
      runId: () => this.runId,
    });
    this.reading = new ReadPolicy({ site, counters, log, identityOf });
    this.revocation = new Revocation({
      counters,
      log,
      lookup: (name) => this.auth.lookup(name),
      clientIdOwner: (clientId) => this.auth.clientIdOwner(clientId),
      identityOf,
      reassign: (client, identity) => this.auth.reassign(client, identity),
      silence: (client) => this.reading.revoke(client),
      maySubscribe: (identity, filter) => this.reading.maySubscribe(identity, filter),
    });
    // The inbox's acknowledgements (the site console) are stamped like chat.
    this.publishing.addStamp(new AckHook(site));
  }

  /**
   * Register a stamping hook (publish-policy.ts describes the interface): publishes on the topics it
   * owns are rewritten from the sender's authenticated identity. Chat is registered in start().
   */
  addStamp(hook: StampHook): void {
    this.publishing.addStamp(hook);
  }

  /** A listener's address (the port is known after start, even when 0 was asked). */
  address(kind: ListenerKind = 'tcp'): { host: string; port: number } | undefined {
    return this.listeners.address(kind);
  }

  /** The level persistence Aedes uses (tests slow it down to see what waits for it). */
  get persistence(): OpenStore['persistence'] | undefined {
    return this.store?.persistence;
  }

  /** MQTT clients connected now (Mosquitto's $SYS/broker/clients/connected). */
  clientsConnected(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  /**
   * An identity for one of the daemon's own services (the site bridge), with a random password, valid
   * on the loopback listener only and never in the identities file (its name is reserved from then on).
   * Call before start(): persisted sessions of identities unknown at start are forgotten.
   */
  serviceCredential(name: string, role: Role): { username: string; password: string } {
    return this.auth.local.addService(name, role);
  }

  /** Username and password the daemon's own client uses on the loopback listener. */
  selfCredential(): { username: string; password: string } {
    return this.auth.local.self();
  }

  /** File holding the local-admin password for tools on the box (`outpost chat`, mosquitto_sub). */
  get localAdminFile(): string {
    return this.auth.local.file;
  }

  /**
   * The site console (console/server.ts) checks a login form against the same identities and the same
   * limits as a CONNECT on a LAN listener (authentication.ts). 'unavailable' when the check was not made.
   */
  checkLogin(
    remote: string,
    username: string,
    password: string,
    loopback: boolean,
  ): Promise<Identity | 'unavailable' | undefined> {
    return this.auth.checkLogin(remote, username, password, loopback);
  }

  /** Whether `identity` still exists with that role (the console ends logins of revoked accounts). */
  hasIdentity(identity: Identity): boolean {
    return this.auth.hasIdentity(identity);
  }

  /** An MQTT-over-WebSocket stream from the console's HTTPS server, for the identity its login named. */
  acceptSession(stream: Duplex, tls: TLSSocket | undefined, remote: string, identity: Identity): void {
    this.listeners.acceptSession(stream, tls, remote, identity);
  }

  async start(): Promise<void> {
    const { broker: settings, dataDir, site } = this.config;
    await mkdir(dataDir, { recursive: true, mode: 0o750 });
    await this.auth.loadIdentities();
    await this.auth.local.prepare();
    const store = await openStore(dataDir, (error) =>
      this.log.warn({ err: error }, 'retained messages could not be read for a subscription'),
    );
    this.store = store;
    try {
      this.runId = `outpost-${this.config.device}-${String(store.run).padStart(10, '0')}`;
      const chat = new ChatHook({
        site,
        settings: {
          history: settings.chatHistory,
          channels: settings.chatChannels,
          channelIdleSeconds: settings.chatChannelIdleSeconds,
        },
        publishHistory: (packet) => this.publishHistory(packet),
        log: this.log,
      });
      await chat.load(store.persistence.createRetainedStream(chat.historyPattern));
      this.chat = chat;
      this.publishing.addStamp(chat);
      this.aedes = await createAedes(
        {
          id: this.runId,
          persistence: store.persistence,
          ...this.auth.hooks(),
          ...this.publishing.hook(),
          ...this.reading.hooks(),
          // The message is stored and handed on: its PUBACK, held by the connection, may go (framing.ts).
          published: (packet, client, done) => {
            if (client) this.counters.messagesReceived += 1;
            const conn = client?.conn;
            if (packet.qos === 1 && packet.messageId !== undefined && conn instanceof GuardedConnection) {
              conn.released(packet.messageId);
            }
            done(null);
          },
        },
        {
          error: (error) => this.log.error({ err: error }, 'mqtt broker error'),
          clientError: (client, error) =>
            this.log.debug({ client: client.id, err: error }, 'mqtt client error; disconnected'),
        },
      );
      await this.revocation.checkPersistedSessions(store);
      await this.listeners.start();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** Re-read the identities file (SIGHUP). A bad file keeps the old table; removed identities are dropped. */
  async reloadIdentities(): Promise<void> {
    if (!(await this.auth.reloadIdentities())) return;
    if (!this.aedes || !this.store) return;
    this.revocation.disconnectChanged(connectedClients(this.aedes));
    await this.revocation.checkPersistedSessions(this.store);
  }

  async stop(): Promise<void> {
    // Histories still waiting for their throttled update are published (and stored) first.
    const chat = this.chat;
    this.chat = undefined;
    await chat?.stop();
    if (chat) this.publishing.removeStamp(chat);
    const { aedes, store } = this;
    this.aedes = undefined;
    this.store = undefined;
    // Stop accepting, close the broker, then end every client connection: the servers close only when
    // they are gone, and a client should see its broker leave rather than a silent socket.
    const closed = this.listeners.stopAccepting();
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    this.listeners.closeConnections();
    await closed;
    await closeStore(store);
  }

  /**
   * The daemon's own subscription on this broker, in process (no socket, no ACL). A camera-role box's
   * uplink goes to the hub, so local tools (`outpost clip`) reach the daemon's commands through this.
   */
  subscribeLocal(filter: string, handler: (topic: string, payload: Buffer) => void): void {
    const aedes = this.aedes;
    if (!aedes) throw new Error('subscribeLocal before the broker started');
    aedes.subscribe(
      filter,
      (packet, callback) => {
        handler(packet.topic, Buffer.from(packet.payload));
        callback();
      },
      () => undefined,
    );
  }

  /** Publish on this broker from the daemon itself (replies to local tools). */
  publishLocal(topic: string, payload: object | Buffer, options: { qos: 0 | 1; retain?: boolean }): void {
    this.aedes?.publish(
      {
        cmd: 'publish',
        topic,
        // A Buffer as it is: an empty one clears a retained message (the console's inbox prunes so).
        payload: Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload)),
        qos: options.qos,
        retain: options.retain ?? false,
        dup: false,
      },
      (error) => {
        if (error) this.log.warn({ err: error, topic }, 'local publish failed');
      },
    );
  }

  healthy(): boolean {
    return this.aedes?.closed === false && this.listeners.listening();
  }

  /** A channel's history, retained (ChatHistory throttles these); resolves once stored, never rejects. */
  private publishHistory(packet: { topic: string; payload: Buffer }): Promise<void> {
    return new Promise((resolve) => {
      const aedes = this.aedes;
      if (!aedes) {
        resolve();
        return;
      }
      aedes.publish({ cmd: 'publish', qos: 1, retain: true, dup: false, ...packet }, (error) => {
        if (error) this.log.warn({ err: error, topic: packet.topic }, 'chat history not stored');
        resolve();
      });
    });
  }
}
