// The embedded MQTT broker (Aedes) and its listeners: plain MQTT on loopback only, MQTT over TLS and
// MQTT over secure WebSocket on the LAN (hub role). Every client authenticates (identities.ts), every
// publish and subscribe passes the ACL (acl.ts), packets and publish rates are bounded (limits.ts), and
// retained messages, persistent sessions and their queued QoS 1/2 messages live on disk
// (aedes-persistence-level under dataDir/broker), so they survive a restart and a kill -9.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import mqttPacket from 'mqtt-packet';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import type { Logger } from 'pino';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Config } from '../config/schema.js';
import { describeError, OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { mayPublish, maySubscribe, ReadScope } from './acl.js';
import { stampChat } from './chat-stamp.js';
import { stampAck } from './ack-stamp.js';
import { IdentityTable, loadIdentities, type Identity, type Role } from './identities.js';
import {
  FailureBackoff,
  FramingError,
  GuardedConnection,
  LoginGate,
  packetSizeGuard,
  RateLimiter,
  SHED,
} from './limits.js';
import { ChatHistory } from './chat-history.js';
import { chatChannel, topics } from './topics.js';
import {
  catchRetainedStreamErrors,
  forgetSession,
  nextRun,
  persistedSubscriptions,
  skipCleanSessionClears,
  type SessionStore,
} from './persistence.js';
import { LEVEL_MEMORY } from './level-store.js';

// mqtt-packet (Aedes's and MQTT.js's writer) otherwise builds, at its first write, a cache of 65,536
// two-byte Buffers for message ids: ~6.4 MB of heap and 65k objects for every garbage collection to
// walk, in a daemon that has a few hundred ids in flight. It then allocates the two bytes per write.
mqttPacket.writeToStream.cacheNumbers = false;

export type BrokerConfig = Pick<Config, 'broker' | 'site' | 'device' | 'dataDir'>;

type ListenerKind = 'tcp' | 'mqtts' | 'wss';

interface Connection {
  kind: ListenerKind;
  /** The TLS socket underneath (mqtts, wss): its verified client certificate names an identity. */
  tls: TLSSocket | undefined;
  remote: string;
  /** A stream from the site console's HTTPS server: its login (session cookie) names the identity. */
  session?: Identity;
}

/** The user name of the daemon's local credential, for tools on the box (loopback listener only). */
export const LOCAL_ADMIN = 'local-admin';

/** Where the daemon keeps the local-admin password (0600), under its data dir. */
export function localAdminFile(dataDir: string): string {
  return join(dataDir, 'local-admin.password');
}

/**
 * Aedes reads every client as fast as the socket delivers, whatever the bus has queued: a flood of
 * QoS 0 publishes toward a slower subscriber piles up in memory. Past this many queued messages, the
 * broker stops reading from clients until the queue is back under it, so TCP pushes back on the
 * publishers instead (what Mosquitto does).
 */
const BUS_BACKLOG = 2000;
/** Topics remembered per identity by publishRefusal; past it the cache starts again. */
const REFUSAL_CACHE_TOPICS = 256;

const CHANNEL_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

/**
 * Aedes drops, per client, every message whose broker counter is not above the highest it has already
 * delivered to that client (`dedupe` in aedes/lib/client.js, meant for a message both queued and
 * delivered live while a persistent session reconnects). With a persistence that answers
 * asynchronously the counters do not reach delivery in order: a QoS 1 message whose queueing for a
 * persistent subscriber took longer than a later message's was dropped as a "duplicate" and never
 * delivered live (clip chunks missing until the receiver asked again; an alert overtaken by QoS 0
 * telemetry was lost). Each client gets this instead, which never calls a message a duplicate:
 * delivery is at least once, and a message published while a persistent session reconnects can
 * arrive twice, which QoS 1 allows (consumers dedupe by the id in the payload).
 */
const NO_DEDUPE: object = new Proxy(Object.create(null) as object, { get: () => 0, set: () => true });

/** A channel's retained history is rewritten at most this often (chat-history.ts). */
const CHAT_HISTORY_INTERVAL_MS = 1000;

/** authenticate()'s answer for a login it did not check: CONNACK 3, server unavailable. */
const UNAVAILABLE = Symbol('unavailable');

/** Refused publishes are re-addressed here and dropped: nobody may subscribe to `$outpost/…`. */
const REFUSED_TOPIC = '$outpost/refused';

/**
 * Aedes's own guards, set on purpose (docs/mqtt.md lists them):
 * - maxInflightInbound 100: QoS 2 publishes one client may hold awaiting PUBREL; our clients publish
 *   QoS 1, so 100 is generous and bounds the dedup store on disk.
 * - maxTopicLevels 16: contract v1 topics have at most 8 levels.
 * - drainTimeout 20 s: a subscriber that stops reading is dropped instead of stalling delivery to all.
 * - queueLimit 64: packets a client may send before its CONNECT is authenticated (scrypt takes ~50 ms).
 * - connectTimeout 10 s: a socket that sends no CONNECT is closed.
 * - heartbeatInterval 5 s: Aedes sweeps the last wills of clients of an earlier broker run (the daemon
 *   was killed with them connected) every 4 heartbeats: 20 s after a crash instead of 4 min. A client
 *   that reconnects before the sweep replaces its will, so a quick reconnect is not announced offline.
 */
const AEDES_GUARDS = {
  maxInflightInbound: 100,
  maxTopicLevels: 16,
  drainTimeout: 20_000,
  queueLimit: 64,
  connectTimeout: 10_000,
  heartbeatInterval: 5000,
} as const;

export interface BrokerCounters {
  /** PUBLISH packets received from clients (Mosquitto's $SYS/broker/publish/messages/received). */
  messagesReceived: number;
  /** Messages delivered to clients ($SYS/broker/publish/messages/sent). */
  messagesSent: number;
  refusedPublish: number;
  refusedSubscribe: number;
  authFailures: number;
  limitDisconnects: number;
  /** Messages not delivered because the receiving client's current identity may not read them. */
  refusedDeliveries: number;
  /** Persisted sessions forgotten because their identity is gone (at start and on reload). */
  forgottenSessions: number;
  /** Password logins refused with CONNACK 3 because the login queue was full. */
  loginsShed: number;
  /** Password logins refused with CONNACK 3 because their address is backing off after failures. */
  loginsBackedOff: number;
  /** Most password checks (scrypt) ever running at once: at most broker.limits.loginConcurrency. */
  loginsPeakInFlight: number;
}

export class Broker implements Service {
  readonly name = 'broker';
  readonly counters: BrokerCounters = {
    messagesReceived: 0,
    messagesSent: 0,
    refusedPublish: 0,
    refusedSubscribe: 0,
    authFailures: 0,
    limitDisconnects: 0,
    refusedDeliveries: 0,
    forgottenSessions: 0,
    loginsShed: 0,
    loginsBackedOff: 0,
    loginsPeakInFlight: 0,
  };
  private aedes: Aedes | undefined;
  private db: Level<string, unknown> | undefined;
  private persistence: SessionStore | undefined;
  private readonly servers = new Map<ListenerKind, Server | HttpsServer>();
  private wss: WebSocketServer | undefined;
  private readonly sockets = new Set<Duplex>();
  private readonly connections = new WeakMap<object, Connection>();
  private readonly identityOf = new WeakMap<Client, Identity>();
  private readonly limiterOf = new WeakMap<Client, RateLimiter>();
  /**
   * publishRefusal's answers per identity and topic ('' = allowed): a client publishes on a handful of
   * topics, over and over. Keyed by the Identity object, which a reload replaces, so a changed role is
   * never answered from the cache. Bounded by REFUSAL_CACHE_TOPICS per identity.
   */
  private readonly refusalCache = new WeakMap<Identity, Map<string, string>>();
  /** What each client may receive, from its identity at CONNECT; NOTHING once that identity changed. */
  private readonly scopeOf = new WeakMap<Client, ReadScope>();
  private readonly identities = new IdentityTable();
  private readonly logins: LoginGate;
  private readonly failures = new FailureBackoff();
  /** Shed or backed-off logins not yet logged: a flood is logged once per 10 s, not once per login. */
  private unavailableSinceLog = 0;
  private lastUnavailableLog = -Infinity;
  private chatHistory: ChatHistory | undefined;
  /** The daemon's own credentials, kept in memory: its uplink uses them in hub role. */
  private selfPassword = '';
  private localPassword = '';
  /** In-memory loopback identities of the daemon's own services (the bridge's `centre`): name → role, password. */
  private readonly serviceIdentities = new Map<string, { role: Role; password: string }>();

  constructor(
    private readonly config: BrokerConfig,
    private readonly log: Logger,
  ) {
    this.logins = new LoginGate(config.broker.limits.loginConcurrency, config.broker.limits.loginQueue);
  }

  /** The plain loopback listener's address (the port is known after start, even when 0 was asked). */
  address(kind: ListenerKind = 'tcp'): { host: string; port: number } | undefined {
    const address = this.servers.get(kind)?.address();
    return address && typeof address === 'object' ? { host: address.address, port: address.port } : undefined;
  }

  /** MQTT clients connected now (Mosquitto's $SYS/broker/clients/connected). */
  clientsConnected(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  /** Username and password the daemon's own client uses on the loopback listener. */
  selfCredential(): { username: string; password: string } {
    return { username: this.config.device, password: this.selfPassword };
  }

  /**
   * An identity for one of the daemon's own services, with a random password, valid on the loopback
   * listener only and never in the identities file (its name is reserved from then on). Call before
   * start(): persisted sessions of identities unknown at start are forgotten.
   */
  serviceCredential(name: string, role: Role): { username: string; password: string } {
    const password = randomBytes(24).toString('base64url');
    this.serviceIdentities.set(name, { role, password });
    return { username: name, password };
  }

  /** File holding the local-admin password for tools on the box (`outpost chat`, mosquitto_sub). */
  get localAdminFile(): string {
    return localAdminFile(this.config.dataDir);
  }

  async start(): Promise<void> {
    const { broker: settings, dataDir } = this.config;
    await mkdir(dataDir, { recursive: true, mode: 0o750 });
    await this.loadIdentities();
    await this.prepareLocalCredentials();

    const tls = settings.tls ? await readTlsMaterial(settings.tls) : undefined;
    this.db = new Level<string, unknown>(join(dataDir, 'broker'), { valueEncoding: 'view', ...LEVEL_MEMORY });
    try {
      await this.db.open();
    } catch (error) {
      throw new OutpostError('START_FAILED', `cannot open the broker's store in ${join(dataDir, 'broker')}`, {
        hint: 'is another outpost daemon running on this data dir? check dataDir and its permissions',
        cause: error,
      });
    }
    // aedes-persistence-level keys a message queued for an offline client by broker id and a counter
    // that restarts at 0 with every broker start: with a fixed id, messages queued after a restart
    // overwrote those queued before it (alerts lost for a console that was away across a hub restart)
    // and were delivered ahead of them. A per-run id that sorts by run keeps both, in order.
    const run = await nextRun(this.db);
    const persistence = catchRetainedStreamErrors(
      skipCleanSessionClears(aedesPersistenceLevel(this.db)),
      (error) => this.log.warn({ err: error }, 'retained messages could not be read for a subscription'),
    );
    this.persistence = persistence;
    const aedes = await Aedes.createBroker({
      id: `outpost-${this.config.device}-${String(run).padStart(10, '0')}`,
      persistence,
      // CONNACK refused (code 6) for a keep-alive of 0 (a dead client would never be noticed) or above this.
      keepaliveLimit: settings.limits.keepAliveMaxSeconds,
      ...AEDES_GUARDS,
      authenticate: (client, username, password, done) => {
        this.authenticate(client, username, password).then(
          (identity) => {
            if (identity === UNAVAILABLE) {
              done(Object.assign(new Error('server unavailable'), { returnCode: 3 as const }), false);
            } else if (identity) {
              this.identityOf.set(client, identity);
              (client as unknown as { duplicates: object }).duplicates = NO_DEDUPE;
              this.scopeOf.set(client, ReadScope.of(identity, this.config.site));
              this.limiterOf.set(client, new RateLimiter(settings.limits.maxPublishRate));
              done(null, true);
            } else {
              const error = Object.assign(new Error('not authorized'), { returnCode: 5 as const });
              done(error, false);
            }
          },
          (error: unknown) => {
            this.log.error({ err: error }, 'mqtt authentication failed unexpectedly');
            done(Object.assign(new Error('server unavailable'), { returnCode: 3 as const }), false);
          },
        );
      },
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, subscription, done) => {
        const identity = this.identityOf.get(client);
        if (identity && maySubscribe(identity, this.config.site, subscription.topic)) {
          done(null, subscription);
          return;
        }
        this.counters.refusedSubscribe += 1;
        this.log.warn(
          { identity: identity?.name, role: identity?.role, client: client.id, topic: subscription.topic },
          'mqtt subscribe refused by ACL',
        );
        done(null, null); // SUBACK 0x80 for this filter; the client stays connected
      },
      // Runs for every message delivered to a client, live and replayed from its persisted queue: a
      // persistent session's subscriptions and queue were made under the identity it had then, and the
      // identity may have been demoted or removed since. Cost per delivery: one WeakMap lookup and a
      // prefix comparison or two (acl.ts ReadScope). Aedes drops a refused message from the queue too.
      authorizeForward: (client, packet) => {
        if (packet.topic !== REFUSED_TOPIC && this.scopeOf.get(client)?.allows(packet.topic)) {
          this.counters.messagesSent += 1;
          return packet;
        }
        if (packet.topic !== REFUSED_TOPIC) this.counters.refusedDeliveries += 1;
        return null;
      },
      // The message is stored and handed on: its PUBACK, held by the connection, may go (limits.ts).
      published: (packet, client, done) => {
        if (client) this.counters.messagesReceived += 1;
        const conn = (client as (Client & { conn?: unknown }) | null)?.conn;
        if (packet.qos === 1 && packet.messageId !== undefined && conn instanceof GuardedConnection) {
          conn.released(packet.messageId);
        }
        done(null);
      },
    });
    keepDeliveryAsynchronous(aedes);
    // Aedes emits 'error' for persistence failures and stale-will publishing; without a listener that
    // would throw and take the daemon down.
    (aedes as unknown as EventEmitter).on('error', (error: unknown) =>
      this.log.error({ err: error }, 'mqtt broker error'),
    );
    aedes.on('clientError', (client, error) =>
      this.log.debug({ client: client.id, err: error }, 'mqtt client error; disconnected'),
    );
    aedes.on('connectionError', (client, error) =>
      this.log.debug({ client: client.id, err: error }, 'mqtt connection error; disconnected'),
    );
    this.aedes = aedes;
    await this.forgetSessionsOfRevokedIdentities();
    const chatHistory = new ChatHistory(
      this.config.site,
      settings.chatHistory,
      (packet) => this.publishHistory(packet),
      {
        maxChannels: settings.chatChannels,
        intervalMs: CHAT_HISTORY_INTERVAL_MS,
        idleMs: settings.chatChannelIdleSeconds * 1000,
      },
    );
    await chatHistory.load(persistence.createRetainedStream(chatHistory.pattern));
    this.chatHistory = chatHistory;

    try {
      await this.listen('tcp', settings.tcp.host, settings.tcp.port, (socket) => this.accept('tcp', socket));
      if (settings.mqtts && tls) {
        const server = createTlsServer(
          { ...tls, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
          (socket) => this.accept('mqtts', socket, socket),
        );
        await this.listen('mqtts', settings.mqtts.host, settings.mqtts.port, undefined, server);
      }
      if (settings.wss && tls) {
        const server = createHttpsServer({
          ...tls,
          requestCert: true,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
        });
        const wss = new WebSocketServer({ server, maxPayload: settings.limits.maxPacketBytes + 16 });
        wss.on('error', (error) => this.log.error({ err: error }, 'mqtt websocket server error'));
        wss.on('connection', (socket, request) => {
          const stream = createWebSocketStream(socket);
          this.accept('wss', stream, request.socket as TLSSocket, request.socket.remoteAddress);
        });
        this.wss = wss;
        await this.listen('wss', settings.wss.host, settings.wss.port, undefined, server);
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
    for (const kind of this.servers.keys()) {
      this.log.info({ listener: kind, ...this.address(kind) }, 'mqtt broker listening');
    }
  }

  /** Re-read the identities file (SIGHUP). A bad file keeps the old table; removed identities are dropped. */
  async reloadIdentities(): Promise<void> {
    try {
      await this.loadIdentities();
    } catch (error) {
      this.log.error(
        { err: error, reason: describeError(error) },
        'identities not reloaded; keeping the old ones',
      );
      return;
    }
    const aedes = this.aedes;
    if (!aedes) return;
    for (const client of Object.values(connectedClients(aedes))) {
      const identity = this.identityOf.get(client);
      if (!identity) continue;
      const now = this.lookup(identity.name);
      if (!now || now.role !== identity.role) {
        this.log.info(
          { identity: identity.name, role: identity.role, now: now?.role ?? null, client: client.id },
          'identity revoked or changed: disconnecting',
        );
        // Until it is gone, it receives nothing; its last will is judged by what the identity is now
        // (none for a removed identity). It may reconnect under its new role.
        this.scopeOf.set(client, ReadScope.NOTHING);
        if (now) this.identityOf.set(client, now);
        else this.identityOf.delete(client);
        client.close();
      }
    }
    await this.forgetSessionsOfRevokedIdentities();
  }

  /**
   * Persisted sessions outlive connections: a client with a persistent session keeps its subscriptions
   * (and messages keep queueing for it) while it is away. For each stored session, by the identity
   * that owns its client id now: gone → the whole session is forgotten (subscriptions, queue, in-flight
   * QoS 2 state, will); still there but no longer allowed some of its filters (a demoted role) → those
   * subscriptions are removed. What is already queued is judged again at delivery (authorizeForward).
   */
  private async forgetSessionsOfRevokedIdentities(): Promise<void> {
    const { db, persistence } = this;
    if (!db || !persistence) return;
    try {
      for (const [clientId, filters] of await persistedSubscriptions(db)) {
        const owner = this.clientIdOwner(clientId);
        const identity = owner === undefined ? undefined : this.lookup(owner);
        if (!identity) {
          await forgetSession(db, persistence, clientId);
          this.counters.forgottenSessions += 1;
          this.log.info({ client: clientId }, 'persisted session of a removed identity forgotten');
          continue;
        }
        const refused = filters.filter((filter) => !maySubscribe(identity, this.config.site, filter));
        if (refused.length === 0) continue;
        await persistence.removeSubscriptions({ id: clientId }, refused);
        this.log.info(
          { client: clientId, identity: identity.name, role: identity.role, filters: refused },
          'persisted subscriptions no longer allowed removed',
        );
      }
    } catch (error) {
      this.log.error({ err: error }, 'persisted sessions not checked against the identities');
    }
  }

  async stop(): Promise<void> {
    // Histories still waiting for their throttled update are published (and stored) first.
    const chatHistory = this.chatHistory;
    this.chatHistory = undefined;
    await chatHistory?.stop();
    const { aedes, wss, persistence, db } = this;
    this.aedes = undefined;
    this.wss = undefined;
    this.persistence = undefined;
    this.db = undefined;
    // Stop accepting, close the broker, then end every client connection: server.close() completes
    // only when they are gone, and a client should see its broker leave rather than a silent socket.
    const closed = [...this.servers.values()].map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    );
    this.servers.clear();
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    wss?.close();
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(closed);
    if (persistence) await persistence.destroy().catch(() => undefined);
    if (db && db.status !== 'closed') await db.close().catch(() => undefined);
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
    return this.aedes?.closed === false && [...this.servers.values()].every((server) => server.listening);
  }

  private async loadIdentities(): Promise<void> {
    const file = this.config.broker.identitiesFile;
    const records = file ? (await loadIdentities(file)).identities : [];
    // `chat` would make a device's own prefix the site's chat topics.
    const reserved = records.find(
      (record) =>
        [LOCAL_ADMIN, 'chat', 'inbox'].includes(record.name) || this.serviceIdentities.has(record.name),
    );
    if (reserved) {
      throw new OutpostError(
        'IDENTITIES_INVALID',
        `${file}: the name ${reserved.name} is reserved (${LOCAL_ADMIN}: the box's own tools; chat, inbox: site topics; ${[...this.serviceIdentities.keys()].join(', ') || 'no'} service identities)`,
        {
          hint: 'rename that identity with outpost-provision',
        },
      );
    }
    this.identities.replace(records);
    this.log.info({ file: file ?? null, identities: records.length }, 'mqtt identities loaded');
  }

  /** The identity by name: the file's, or one of the daemon's two in-memory credentials. */
  private lookup(name: string): Identity | undefined {
    const service = this.serviceIdentities.get(name);
    if (service) return { name, role: service.role };
    const record = this.identities.get(name);
    if (record) return { name: record.name, role: record.role };
    if (name === LOCAL_ADMIN) return { name, role: 'admin' };
    if (name === this.config.device) return { name, role: 'device' };
    return undefined;
  }

  private async prepareLocalCredentials(): Promise<void> {
    this.selfPassword = randomBytes(24).toString('base64url');
    const file = this.localAdminFile;
    try {
      this.localPassword = (await readFile(file, 'utf8')).trim();
    } catch {
      this.localPassword = '';
    }
    if (this.localPassword.length < 16) {
      this.localPassword = randomBytes(24).toString('base64url');
      await writeFile(file, `${this.localPassword}\n`, { mode: 0o600 });
    }
    await chmod(file, 0o600);
  }

  private async authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
  ): Promise<Identity | typeof UNAVAILABLE | undefined> {
    const connection = this.connections.get(client.conn);
    const refuse = (reason: string): undefined => {
      this.counters.authFailures += 1;
      this.log.warn(
        {
          client: client.id,
          username: username ?? null,
          listener: connection?.kind,
          remote: connection?.remote,
        },
        `mqtt client refused: ${reason}`,
      );
      return undefined;
    };
    if (!connection) return refuse('unknown connection');
    let identity: Identity | undefined;
    if (connection.session) {
      // Logged in through the console's form (same identities, same login limits): the cookie was
      // checked at the WebSocket upgrade; the identity must still be what it was then.
      const now = this.lookup(connection.session.name);
      if (username !== connection.session.name) return refuse('user name differs from the console login');
      if (!now || now.role !== connection.session.role) return refuse('identity revoked or changed');
      identity = now;
    } else if (password !== undefined && username !== undefined) {
      const given = password.toString('utf8');
      const service = this.serviceIdentities.get(username);
      if (
        service ||
        username === LOCAL_ADMIN ||
        (username === this.config.device && !this.identities.get(username))
      ) {
        // The in-memory credentials work on the loopback listener only.
        const expected =
          service?.password ?? (username === LOCAL_ADMIN ? this.localPassword : this.selfPassword);
        identity =
          connection.kind === 'tcp' && sameSecret(given, expected) ? this.lookup(username) : undefined;
      } else {
        // Address backoff on the LAN listeners only: on loopback every local tool shares one address.
        const lan = connection.kind !== 'tcp';
        const wait = lan ? this.failures.wait(connection.remote) : 0;
        if (wait > 0) {
          this.counters.loginsBackedOff += 1;
          return this.unavailable(connection, 'address backing off after failed logins', wait);
        }
        const checked = await this.logins.run(
          connection.remote,
          () => this.identities.byPassword(username, given),
          () => client.closed || (client.conn as Duplex).destroyed,
        );
        this.counters.loginsPeakInFlight = this.logins.peakInFlight;
        if (checked === SHED) {
          this.counters.loginsShed += 1;
          return this.unavailable(connection, 'login queue full');
        }
        identity = checked;
        if (lan && identity) this.failures.succeeded(connection.remote);
        else if (lan) this.failures.failed(connection.remote);
      }
      if (!identity) return refuse('bad user name or password');
    } else if (connection.tls?.authorized) {
      const commonName = connection.tls.getPeerCertificate().subject?.CN;
      const name = Array.isArray(commonName) ? commonName[0] : commonName;
      identity = name ? this.identities.byCertificate(name) : undefined;
      if (!identity)
        return refuse(`certificate CN ${name ?? '(none)'} is not an identity allowed to use certificates`);
      if (username !== undefined && username !== identity.name)
        return refuse('user name differs from certificate CN');
    } else {
      return refuse(
        connection.tls ? 'no password and no valid site certificate' : 'no user name and password',
      );
    }
    // Aedes stores the will at CONNECT without asking authorizePublish: check it now, or a client could
    // leave a will on a topic it may not publish to (another device's status).
    const will = (client as unknown as { _will?: StoredWill })._will;
    if (will?.topic !== undefined && this.publishRefusal(identity, will.topic)) {
      return refuse(`last-will topic ${will.topic} is not one this identity may publish to`);
    }
    // Stored with the will (aedes-persistence-level keeps the whole packet), so that a will left behind
    // by a crash is judged by who left it, not by its client id (authorizeStaleWill).
    if (will) will.outpostIdentity = identity.name;
    // A client id that belongs to another identity's namespace would let one client take over another's
    // session (and its queued messages): ids are bound to their identity.
    const owner = this.clientIdOwner(client.id);
    if (owner && owner !== identity.name)
      return refuse(`client id ${client.id} belongs to identity ${owner}`);
    const current = this.aedes ? connectedClients(this.aedes)[client.id] : undefined;
    const currentIdentity = current ? this.identityOf.get(current) : undefined;
    if (currentIdentity && currentIdentity.name !== identity.name) {
      return refuse(`client id ${client.id} is in use by identity ${currentIdentity.name}`);
    }
    if (!client.clean && owner !== identity.name) {
      return refuse(`a persistent session needs client id ${identity.name} or ${identity.name}.SUFFIX`);
    }
    this.log.info(
      { client: client.id, identity: identity.name, role: identity.role, listener: connection.kind },
      'mqtt client connected',
    );
    return identity;
  }

  /** CONNACK 3 for a login not checked (queue full, address backing off); logged at most every 10 s. */
  private unavailable(connection: Connection, reason: string, waitMs?: number): typeof UNAVAILABLE {
    this.unavailableSinceLog += 1;
    const now = performance.now();
    if (now - this.lastUnavailableLog >= 10_000) {
      this.log.warn(
        {
          reason,
          listener: connection.kind,
          remote: connection.remote,
          refused: this.unavailableSinceLog,
          shed: this.counters.loginsShed,
          backedOff: this.counters.loginsBackedOff,
          ...(waitMs === undefined ? {} : { waitMs: Math.ceil(waitMs) }),
        },
        'mqtt logins refused as server unavailable (password checks are limited)',
      );
      this.lastUnavailableLog = now;
      this.unavailableSinceLog = 0;
    }
    return UNAVAILABLE;
  }

  /** `cam-a` and `cam-a.tool` belong to identity cam-a ('.' cannot appear in a name). */
  private clientIdOwner(clientId: string): string | undefined {
    const name = clientId.split('.')[0] ?? clientId;
    return this.lookup(name) ? name : undefined;
  }

  private authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    const site = this.config.site;
    const brokerId = (packet as StoredWill).brokerId;
    if (!client || (brokerId !== undefined && brokerId !== this.aedes?.id)) {
      this.authorizeStaleWill(packet);
      done(null);
      return;
    }
    const identity = this.identityOf.get(client);
    if (!identity) {
      done(new Error('publish from an unauthenticated client'));
      return;
    }
    // Aedes publishes a departing client's will through this hook too: that is not the client's rate.
    if (!client.closed && this.limiterOf.get(client)?.take() === false) {
      // Publishes already read from the socket arrive here too: count and log the client once.
      if (this.limiterOf.delete(client)) {
        this.counters.limitDisconnects += 1;
        this.log.warn(
          { identity: identity.name, client: client.id },
          'mqtt client over its publish rate: disconnected',
        );
      }
      done(new Error('publish rate limit exceeded'));
      return;
    }
    const refusal = this.publishRefusal(identity, packet.topic);
    if (refusal) {
      this.counters.refusedPublish += 1;
      this.log.warn(
        {
          identity: identity.name,
          role: identity.role,
          client: client.id,
          topic: packet.topic,
          reason: refusal,
        },
        'mqtt publish refused; dropped',
      );
      refuseInPlace(packet);
      done(null);
      return;
    }
    // Commands and chat are events: a retained one would fire again for every new subscriber.
    if (packet.topic.includes('/cmd/')) packet.retain = false;
    const channel = chatChannel(site, packet.topic);
    if (channel !== undefined) {
      packet.retain = false;
      let stamped = stampChat(packet.payload, identity, Date.now());
      if (stamped.ok && this.chatHistory) {
        const room = this.chatHistory.admit(channel);
        if (!room.ok) stamped = room;
        else if (room.evicted !== undefined)
          this.log.info(
            { channel, evicted: room.evicted },
            'chat channel opened in the place of the quietest one; its history removed',
          );
      }
      if (!stamped.ok) {
        this.counters.refusedPublish += 1;
        this.log.warn(
          { identity: identity.name, topic: packet.topic, reason: stamped.reason },
          'chat message refused; dropped',
        );
        refuseInPlace(packet);
      } else {
        packet.payload = stamped.payload;
        this.chatHistory?.append(channel, stamped.message);
      }
    }
    // Inbox acknowledgements: stamped with who and when, like chat (ack-stamp.ts).
    const ack = stampAck(site, packet.topic, packet.payload, identity, Date.now());
    if (ack) {
      packet.retain = false;
      if (ack.ok) packet.payload = ack.payload;
      else {
        this.counters.refusedPublish += 1;
        this.log.warn({ identity: identity.name, topic: packet.topic, reason: ack.reason }, 'ack refused');
        refuseInPlace(packet);
      }
    }
    done(null);
  }

  /**
   * A will left by a client of an earlier broker run (the daemon was killed with it connected), which
   * Aedes publishes with no client. It was checked at CONNECT, but the identity may be gone or changed
   * since, and an admin may leave a will anywhere: after a crash the broker speaks only for the identity
   * that left it, on its own status, and only if that identity still exists and may publish there.
   */
  private authorizeStaleWill(packet: PublishPacket): void {
    const will = packet as PublishPacket & StoredWill;
    // Wills stored before the identity was recorded: the client id's owner (ids are bound to identities).
    const name = will.outpostIdentity ?? this.clientIdOwner(will.clientId ?? '');
    const identity = name === undefined ? undefined : this.lookup(name);
    const ownStatus = identity && topics.status(this.config.site, identity.name) === packet.topic;
    if (identity && ownStatus && !this.publishRefusal(identity, packet.topic)) {
      this.log.info(
        { identity: identity.name, client: will.clientId, topic: packet.topic },
        'last will of a client of an earlier broker run published',
      );
      return;
    }
    this.counters.refusedPublish += 1;
    this.log.warn(
      {
        identity: name ?? null,
        client: will.clientId,
        topic: packet.topic,
        reason: identity ? "not the identity's own status" : 'identity gone',
      },
      'last will of a client of an earlier broker run refused; dropped',
    );
    refuseInPlace(packet);
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

  /** Why `identity` may not publish on `topic`, or undefined when it may. */
  private publishRefusal(identity: Identity, topic: string): string | undefined {
    let known = this.refusalCache.get(identity);
    if (!known) this.refusalCache.set(identity, (known = new Map<string, string>()));
    const cached = known.get(topic);
    if (cached !== undefined) return cached === '' ? undefined : cached;
    const refusal = this.decidePublish(identity, topic);
    if (known.size >= REFUSAL_CACHE_TOPICS) known.clear();
    known.set(topic, refusal ?? '');
    return refusal;
  }

  private decidePublish(identity: Identity, topic: string): string | undefined {
    if (!mayPublish(identity, this.config.site, topic)) return 'not allowed by the ACL';
    if (identity.role === 'admin') return undefined;
    // `+` matches an empty level: `…/chat/` would pass `P/chat/+` yet name no channel (and so escape
    // stamping). No contract v1 topic has an empty level.
    if (topic.split('/').includes('')) return 'empty topic level';
    const channel = chatChannel(this.config.site, topic);
    if (channel !== undefined && !CHANNEL_NAME.test(channel)) {
      return 'a chat channel is 1–32 lowercase letters, digits or "-"';
    }
    return undefined;
  }

  /**
   * The site console (console/server.ts) checks a login form against the same identities and the same
   * limits as a CONNECT on a LAN listener: address backoff after failures, the scrypt queue. local-admin
   * (the box's own credential) only from loopback. 'unavailable' when the check was not made.
   */
  async checkLogin(
    remote: string,
    username: string,
    password: string,
    loopback: boolean,
  ): Promise<Identity | 'unavailable' | undefined> {
    if (username === LOCAL_ADMIN) {
      const ok = loopback && sameSecret(password, this.localPassword);
      if (!ok) this.counters.authFailures += 1;
      return ok ? this.lookup(LOCAL_ADMIN) : undefined;
    }
    if (this.failures.wait(remote) > 0) {
      this.counters.loginsBackedOff += 1;
      return 'unavailable';
    }
    const checked = await this.logins.run(
      remote,
      () => this.identities.byPassword(username, password),
      () => false,
    );
    if (checked === SHED) {
      this.counters.loginsShed += 1;
      return 'unavailable';
    }
    if (checked) this.failures.succeeded(remote);
    else {
      this.failures.failed(remote);
      this.counters.authFailures += 1;
    }
    return checked;
  }

  /** Whether `identity` still exists with that role (the console ends logins of revoked accounts). */
  hasIdentity(identity: Identity): boolean {
    return this.lookup(identity.name)?.role === identity.role;
  }

  /** An MQTT-over-WebSocket stream from the console's HTTPS server, for the identity its login named. */
  acceptSession(stream: Duplex, tls: TLSSocket | undefined, remote: string, identity: Identity): void {
    this.accept('wss', stream, tls, remote, identity);
  }

  private accept(
    kind: ListenerKind,
    stream: Duplex,
    tls?: TLSSocket,
    remoteAddress?: string,
    session?: Identity,
  ): void {
    const aedes = this.aedes;
    const remote = remoteAddress ?? (stream as Socket).remoteAddress ?? 'unknown';
    if (!aedes || this.sockets.size >= this.config.broker.limits.maxConnections) {
      this.log.warn(
        { listener: kind, remote, max: this.config.broker.limits.maxConnections },
        'mqtt connection refused: too many connections',
      );
      stream.destroy();
      return;
    }
    // MQTT is request/acknowledge: without TCP_NODELAY each PUBACK can wait out a 40 ms delayed ACK.
    (tls ?? (stream as Socket)).setNoDelay?.(true);
    this.sockets.add(stream);
    stream.once('close', () => this.sockets.delete(stream));
    stream.on('error', () => stream.destroy());
    // The guard sits between the socket and Aedes's parser; replies go straight to the socket.
    const bus = messageBus(aedes);
    const guard = packetSizeGuard(this.config.broker.limits.maxPacketBytes, () => bus.length < BUS_BACKLOG);
    const conn = new GuardedConnection(stream, guard);
    guard.on('error', (error) => {
      if (!(error instanceof FramingError)) return;
      this.counters.limitDisconnects += 1;
      this.log.warn(
        { listener: kind, remote, err: error },
        'mqtt client sent an oversized or malformed packet: disconnected',
      );
      stream.destroy();
    });
    conn.on('error', () => stream.destroy());
    this.connections.set(conn, { kind, tls, remote, ...(session ? { session } : {}) });
    aedes.handle(conn);
  }

  private async listen(
    kind: ListenerKind,
    host: string,
    port: number,
    onSocket: ((socket: Socket) => void) | undefined,
    existing?: Server | HttpsServer,
  ): Promise<void> {
    const server = existing ?? createServer(onSocket);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new OutpostError(
        'START_FAILED',
        `cannot listen for MQTT (${kind}) on ${host}:${port} (${code ?? 'error'})`,
        {
          hint:
            code === 'EADDRINUSE'
              ? `another program (mosquitto?) holds the port: stop it or change broker.${kind}.port`
              : `check broker.${kind} in the config`,
          cause: error,
        },
      );
    }
    server.on('error', (error) => this.log.error({ err: error, listener: kind }, 'mqtt listener error'));
    if (kind !== 'wss')
      server.on('tlsClientError', (error) => this.log.debug({ err: error }, 'tls handshake failed'));
    this.servers.set(kind, server);
  }
}

interface MessageBus {
  /** Messages waiting for a delivery slot (mqemitter's public `length`). */
  readonly length: number;
  on(topic: string, handler: (packet: unknown, done: () => void) => void): void;
}

function messageBus(aedes: Aedes): MessageBus {
  return (aedes as unknown as { mq: MessageBus }).mq;
}

/**
 * mqemitter (Aedes's message bus) starts the next queued message from the completion of the previous
 * one. A message nobody subscribes to completes synchronously, so when its queue is full (a slow
 * subscriber under a flood) and that subscriber leaves, the backlog drains by recursion until
 * "Maximum call stack size exceeded" kills the daemon (seen in bench:broker; mcollina/mqemitter#204,
 * unreleased). One handler on every topic breaks such a chain: it completes at once, except that past
 * 500 completions in one turn of the event loop it completes on the next turn.
 */
function keepDeliveryAsynchronous(aedes: Aedes): void {
  let thisTurn = 0;
  messageBus(aedes).on('#', (_packet, done) => {
    thisTurn += 1;
    if (thisTurn === 1) setImmediate(() => (thisTurn = 0));
    if (thisTurn < 500) done();
    else setImmediate(done);
  });
}

/** A last will as aedes-persistence-level stores it (the CONNECT's will plus these fields). */
interface StoredWill {
  topic?: string;
  clientId?: string;
  /** The id of the broker run the client was connected to. */
  brokerId?: string;
  /** Set by authenticate(): the identity that left this will. */
  outpostIdentity?: string;
}

/** Aedes keeps its connected clients by id; its type declarations leave the map out. */
function connectedClients(aedes: Aedes): Record<string, Client> {
  return (aedes as unknown as { clients: Record<string, Client> }).clients;
}

function refuseInPlace(packet: { topic: string; retain: boolean }): void {
  packet.topic = REFUSED_TOPIC;
  packet.retain = false;
}

function sameSecret(given: string, expected: string): boolean {
  // Compare hashes of both, so the comparison takes the same time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return expected.length > 0 && timingSafeEqual(a, b);
}

async function readTlsMaterial(files: {
  ca: string;
  cert: string;
  key: string;
}): Promise<{ ca: Buffer; cert: Buffer; key: Buffer }> {
  const read = async (key: 'ca' | 'cert' | 'key'): Promise<Buffer> => {
    try {
      return await readFile(files[key]);
    } catch (error) {
      throw new OutpostError('TLS_MATERIAL_INVALID', `broker.tls.${key}: ${files[key]} cannot be read`, {
        hint: 'provision the box (outpost-provision bundle) or fix the path; the file must be readable by the outpost user',
        cause: error,
      });
    }
  };
  return { ca: await read('ca'), cert: await read('cert'), key: await read('key') };
}
