// Who a client is: Aedes's preConnect and authenticate hooks. A password (scrypt, through the login
// gate), a site-signed client certificate, a site-console login (its session cookie, checked at the
// WebSocket upgrade), or on loopback one of the box's own credentials (local-admin.ts) names an
// identity (identities.ts); then the client id is bound to it (`cam-a` and
// `cam-a.anything` belong to identity cam-a alone, a persistent session must use its own namespace),
// and a last will is checked against what the identity may publish. Every refusal is a CONNACK return
// code MQTT 3.1.1 defines: 2 identifier rejected, 3 server unavailable, 5 not authorized.
import type { Logger } from 'pino';
import { describeError, OutpostError } from '../../errors.js';
import { IdentityTable, loadIdentities, type Identity } from '../identities.js';
import { LOCAL_ADMIN, LocalCredentials } from '../local-admin.js';
import { pendingWill, type AedesClient, type AedesHooks } from './aedes.js';
import type { BrokerCounters } from './counters.js';
import type { ConnectionInfo } from './listeners.js';
import { FailureBackoff, LoginGate, SHED } from './login-gate.js';

/** CONNACK return codes (MQTT 3.1.1 §3.2.2.3) this room answers with. */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const NOT_AUTHORIZED = 5;

type Refusal = typeof IDENTIFIER_REJECTED | typeof SERVER_UNAVAILABLE | typeof NOT_AUTHORIZED;

export interface AuthenticationDeps {
  config: {
    device: string;
    dataDir: string;
    broker: {
      identitiesFile?: string | undefined;
      limits: { loginConcurrency: number; loginQueue: number };
    };
  };
  counters: BrokerCounters;
  log: Logger;
  /** What a connection is (listeners.ts); undefined for one the listeners did not accept. */
  connectionOf: (connection: unknown) => ConnectionInfo | undefined;
  /** The identity of the client connected now with this id, if any. */
  holderOf: (clientId: string) => Identity | undefined;
  /** Why `identity` may not publish on `topic` (publish-policy.ts), for a will left at CONNECT. */
  publishRefusal: (identity: Identity, topic: string) => string | undefined;
  /** A client accepted as `identity`, before its CONNACK (and so before any of its subscriptions). */
  onAccepted: (client: AedesClient, identity: Identity) => void;
}

export class Authentication {
  readonly local: LocalCredentials;
  private readonly identities = new IdentityTable();
  private readonly identityOf = new WeakMap<AedesClient, Identity>();
  /** Clients whose CONNECT had a zero-byte client id and clean session 0 (preConnect). */
  private readonly emptyPersistentId = new WeakSet<AedesClient>();
  private readonly logins: LoginGate;
  private readonly failures = new FailureBackoff();
  /** Shed or backed-off logins not yet logged: a flood is logged once per 10 s, not once per login. */
  private unavailableSinceLog = 0;
  private lastUnavailableLog = -Infinity;

  constructor(private readonly deps: AuthenticationDeps) {
    const { limits } = deps.config.broker;
    this.logins = new LoginGate(limits.loginConcurrency, limits.loginQueue);
    this.local = new LocalCredentials(deps.config.dataDir, deps.config.device);
  }

  /** Aedes's preConnect and authenticate hooks. */
  hooks(): Pick<AedesHooks, 'preConnect' | 'authenticate'> {
    return {
      // [MQTT-3.1.3-8] wants CONNACK 0x02 for a zero-byte client id with clean session 0, but Aedes
      // gives such a client a random id before authenticate() sees it: remember it here.
      preConnect: (client, packet, done) => {
        if (packet.clientId === '' && !packet.clean) this.emptyPersistentId.add(client);
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        this.authenticate(client, username, password).then(
          (outcome) => {
            if (typeof outcome === 'number') {
              const message = { 2: 'identifier rejected', 3: 'server unavailable', 5: 'not authorized' }[
                outcome
              ];
              done(Object.assign(new Error(message), { returnCode: outcome }), false);
              return;
            }
            this.identityOf.set(client, outcome);
            this.deps.onAccepted(client, outcome);
            done(null, true);
          },
          (error: unknown) => {
            this.deps.log.error({ err: error }, 'mqtt authentication failed unexpectedly');
            done(Object.assign(new Error('server unavailable'), { returnCode: SERVER_UNAVAILABLE }), false);
          },
        );
      },
    };
  }

  /** Who `client` is now (undefined before its CONNECT is accepted, or after its identity was removed). */
  identity(client: AedesClient): Identity | undefined {
    return this.identityOf.get(client);
  }

  /** After a reload: `client` is now `identity` (its new role), or nobody (removed). */
  reassign(client: AedesClient, identity: Identity | undefined): void {
    if (identity) this.identityOf.set(client, identity);
    else this.identityOf.delete(client);
  }

  /** Read the identities file; throws (IDENTITIES_INVALID) and keeps the table in force on a bad one. */
  async loadIdentities(): Promise<void> {
    const file = this.deps.config.broker.identitiesFile;
    const records = file ? (await loadIdentities(file)).identities : [];
    // `chat` or `inbox` would make a device's own prefix the site's chat or inbox topics; a service
    // identity (the bridge's) is the daemon's own.
    const services = this.local.serviceNames();
    const reserved = records.find((record) =>
      [LOCAL_ADMIN, 'chat', 'inbox', ...services].includes(record.name),
    );
    if (reserved) {
      throw new OutpostError(
        'IDENTITIES_INVALID',
        `${file}: the name ${reserved.name} is reserved (${LOCAL_ADMIN}: the box's own tools; chat, inbox: site topics; ${services.join(', ') || 'no'} service identities)`,
        { hint: 'rename that identity with outpost-provision' },
      );
    }
    this.identities.replace(records);
    this.deps.log.info({ file: file ?? null, identities: records.length }, 'mqtt identities loaded');
  }

  /** Reload for SIGHUP: true when the new table is in force, false (logged) when the old one stays. */
  async reloadIdentities(): Promise<boolean> {
    try {
      await this.loadIdentities();
      return true;
    } catch (error) {
      this.deps.log.error(
        { err: error, reason: describeError(error) },
        'identities not reloaded; keeping the old ones',
      );
      return false;
    }
  }

  /** The identity by name: the file's, or one of the daemon's two in-memory credentials. */
  lookup(name: string): Identity | undefined {
    const service = this.local.serviceRole(name);
    if (service) return { name, role: service };
    const record = this.identities.get(name);
    if (record) return { name: record.name, role: record.role };
    if (name === LOCAL_ADMIN) return { name, role: 'admin' };
    if (name === this.deps.config.device) return { name, role: 'device' };
    return undefined;
  }

  /** `cam-a` and `cam-a.tool` belong to identity cam-a ('.' cannot appear in a name). */
  clientIdOwner(clientId: string): string | undefined {
    const name = clientId.split('.')[0] ?? clientId;
    return this.lookup(name) ? name : undefined;
  }

  private async authenticate(
    client: AedesClient,
    username: string | undefined,
    password: Buffer | undefined,
  ): Promise<Identity | Refusal> {
    const connection = this.deps.connectionOf(client.conn);
    const refuse = (reason: string, code: Refusal = NOT_AUTHORIZED): Refusal => {
      this.deps.counters.authFailures += 1;
      this.deps.log.warn(
        {
          client: client.id,
          username: username ?? null,
          listener: connection?.kind,
          remote: connection?.remote,
        },
        `mqtt client refused: ${reason}`,
      );
      return code;
    };
    if (!connection) return refuse('unknown connection');
    // [MQTT-3.1.3-9]: a client id the broker does not accept is refused with 0x02; this one needs no password.
    if (this.emptyPersistentId.has(client))
      return refuse('a zero-byte client id needs clean session 1 [MQTT-3.1.3-8]', IDENTIFIER_REJECTED);
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
      if (
        this.local.serviceRole(username) !== undefined ||
        username === LOCAL_ADMIN ||
        (username === this.deps.config.device && !this.identities.get(username))
      ) {
        // The in-memory credentials work on the loopback listener only.
        identity =
          connection.kind === 'tcp' && this.local.matches(username, given)
            ? this.lookup(username)
            : undefined;
      } else {
        const checked = await this.checkPassword(client, connection, username, given);
        if (checked === SERVER_UNAVAILABLE) return checked;
        identity = checked;
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
    const will = pendingWill(client);
    if (will?.topic !== undefined && this.deps.publishRefusal(identity, will.topic)) {
      return refuse(`last-will topic ${will.topic} is not one this identity may publish to`);
    }
    // Stored with the will (aedes-persistence-level keeps the whole packet), so that a will left behind
    // by a crash is judged by who left it, not by its client id (publish-policy.ts, stale wills).
    if (will) will.outpostIdentity = identity.name;
    // A client id that belongs to another identity's namespace would let one client take over another's
    // session (and its queued messages): ids are bound to their identity.
    const owner = this.clientIdOwner(client.id);
    if (owner && owner !== identity.name)
      return refuse(`client id ${client.id} belongs to identity ${owner}`, IDENTIFIER_REJECTED);
    const holder = this.deps.holderOf(client.id);
    if (holder && holder.name !== identity.name)
      return refuse(`client id ${client.id} is in use by identity ${holder.name}`, IDENTIFIER_REJECTED);
    if (!client.clean && owner !== identity.name) {
      return refuse(
        `a persistent session needs client id ${identity.name} or ${identity.name}.SUFFIX`,
        IDENTIFIER_REJECTED,
      );
    }
    this.deps.log.info(
      { client: client.id, identity: identity.name, role: identity.role, listener: connection.kind },
      'mqtt client connected',
    );
    return identity;
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
    const { counters } = this.deps;
    if (username === LOCAL_ADMIN) {
      const ok = loopback && this.local.matches(LOCAL_ADMIN, password);
      if (!ok) counters.authFailures += 1;
      return ok ? this.lookup(LOCAL_ADMIN) : undefined;
    }
    if (this.failures.wait(remote) > 0) {
      counters.loginsBackedOff += 1;
      return 'unavailable';
    }
    const checked = await this.logins.run(
      remote,
      () => this.identities.byPassword(username, password),
      () => false,
    );
    counters.loginsPeakInFlight = this.logins.peakInFlight;
    if (checked === SHED) {
      counters.loginsShed += 1;
      return 'unavailable';
    }
    if (checked) this.failures.succeeded(remote);
    else {
      this.failures.failed(remote);
      counters.authFailures += 1;
    }
    return checked;
  }

  /** Whether `identity` still exists with that role (the console ends logins of revoked accounts). */
  hasIdentity(identity: Identity): boolean {
    return this.lookup(identity.name)?.role === identity.role;
  }

  /** A password check through the login gate; SERVER_UNAVAILABLE when it was not made. */
  private async checkPassword(
    client: AedesClient,
    connection: ConnectionInfo,
    username: string,
    given: string,
  ): Promise<Identity | undefined | typeof SERVER_UNAVAILABLE> {
    const { counters } = this.deps;
    // Address backoff on the LAN listeners only: on loopback every local tool shares one address.
    const lan = connection.kind !== 'tcp';
    const wait = lan ? this.failures.wait(connection.remote) : 0;
    if (wait > 0) {
      counters.loginsBackedOff += 1;
      return this.unavailable(connection, 'address backing off after failed logins', wait);
    }
    const checked = await this.logins.run(
      connection.remote,
      () => this.identities.byPassword(username, given),
      () => client.closed || (client.conn as { destroyed?: boolean }).destroyed === true,
    );
    counters.loginsPeakInFlight = this.logins.peakInFlight;
    if (checked === SHED) {
      counters.loginsShed += 1;
      return this.unavailable(connection, 'login queue full');
    }
    if (lan && checked) this.failures.succeeded(connection.remote);
    else if (lan) this.failures.failed(connection.remote);
    return checked;
  }

  /** CONNACK 3 for a login not checked (queue full, address backing off); logged at most every 10 s. */
  private unavailable(
    connection: ConnectionInfo,
    reason: string,
    waitMs?: number,
  ): typeof SERVER_UNAVAILABLE {
    const { counters, log } = this.deps;
    this.unavailableSinceLog += 1;
    const now = performance.now();
    if (now - this.lastUnavailableLog >= 10_000) {
      log.warn(
        {
          reason,
          listener: connection.kind,
          remote: connection.remote,
          refused: this.unavailableSinceLog,
          shed: counters.loginsShed,
          backedOff: counters.loginsBackedOff,
          ...(waitMs === undefined ? {} : { waitMs: Math.ceil(waitMs) }),
        },
        'mqtt logins refused as server unavailable (password checks are limited)',
      );
      this.lastUnavailableLog = now;
      this.unavailableSinceLog = 0;
    }
    return SERVER_UNAVAILABLE;
  }
}
