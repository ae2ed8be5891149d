// The console's broker at the operations centre (`outpost centre console`): the centre's own MQTT
// broker (Mosquitto, EMQX), which every site's hub bridges to. The centre's accounts are that broker's
// (`outpost-provision centre console add`), so a console login is an MQTT CONNECT to it with the
// operator's name and password: the broker says yes or no, and its ACL decides what the operator reads
// and writes, as for any MQTT client of it.
//
// The page never holds the password. The console server keeps it in memory with the login (tied to
// the identity object, forgotten with it) and, for the page's MQTT WebSocket, opens a TLS connection to
// the central broker and replaces the user name and password of the page's CONNECT with the login's;
// every other byte is passed through untouched. A failed login from one address backs off, as on a hub.
import { randomBytes } from 'node:crypto';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as connectTls } from 'node:tls';
import { connectAsync } from 'mqtt';
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import type { Logger } from 'pino';
import type { Identity } from '../mqtt/identities.js';
import type { ConsoleBroker } from './server.js';

/** A CONNECT larger than this is not a console's (its own is under 200 bytes). */
const MAX_CONNECT_BYTES = 4096;
/** Login checks in flight at once; past it a login is answered "busy, try again". */
const MAX_CHECKS = 16;
/** Failed logins from one address before it backs off: 1 s, doubling to 30 s. */
const FREE_FAILURES = 3;
const MAX_BACKOFF_MS = 30_000;

export interface CentralBrokerOptions {
  /** mqtts://HOST:PORT of the central broker (mqtt:// only on loopback). */
  url: string;
  /** PEM CA that signed the central broker's certificate. */
  ca: Buffer | undefined;
  log: Logger;
  now?: () => number;
}

export class CentralBroker implements ConsoleBroker {
  /** Each login's password, for its page's MQTT connections; gone with the login's identity object. */
  private readonly passwords = new WeakMap<Identity, string>();
  private readonly failures = new Map<string, { count: number; until: number }>();
  private checking = 0;
  /** Addresses with a check under way: one at a time each, so parallel guesses do not dodge the back-off. */
  private readonly checkingFrom = new Set<string>();
  private readonly target: { tls: boolean; host: string; port: number };
  private readonly now: () => number;

  constructor(private readonly options: CentralBrokerOptions) {
    const url = new URL(options.url);
    const tls = url.protocol === 'mqtts:';
    this.target = {
      tls,
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || (tls ? 8883 : 1883)),
    };
    this.now = options.now ?? (() => Date.now());
  }

  async checkLogin(
    remote: string,
    username: string,
    password: string,
  ): Promise<Identity | 'unavailable' | undefined> {
    const failed = this.failures.get(remote);
    if ((failed && failed.until > this.now()) || this.checking >= MAX_CHECKS || this.checkingFrom.has(remote))
      return 'unavailable';
    this.checking += 1;
    this.checkingFrom.add(remote);
    try {
      const client = await connectAsync(this.options.url, {
        protocolVersion: 4,
        username,
        password,
        clientId: `outpost-console-login-${randomBytes(6).toString('hex')}`,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        ...(this.options.ca ? { ca: [this.options.ca] } : {}),
      });
      client.on('error', () => undefined);
      await client.endAsync(true);
      this.failures.delete(remote);
      // A site's bridge account (site-NAME) is a machine's, not a person's: the server refuses it.
      const identity: Identity = {
        name: username,
        role: username.startsWith('site-') ? 'device' : 'console',
      };
      this.passwords.set(identity, password);
      return identity;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 4 || code === 5) {
        const count = (this.failures.get(remote)?.count ?? 0) + 1;
        const wait =
          count <= FREE_FAILURES ? 0 : Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (count - FREE_FAILURES - 1));
        this.failures.set(remote, { count, until: this.now() + wait });
        if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value ?? '');
        return undefined;
      }
      this.options.log.warn(
        { err: error, broker: this.options.url },
        'console: the central broker cannot check a login (unreachable, or its certificate is not signed by centralBroker.ca)',
      );
      return 'unavailable';
    } finally {
      this.checking -= 1;
      this.checkingFrom.delete(remote);
    }
  }

  /** The page's MQTT stream: its CONNECT gets the login's name and password, then bytes pass both ways. */
  acceptSession(stream: Duplex, _tls: unknown, remote: string, identity: Identity): void {
    const password = this.passwords.get(identity);
    if (password === undefined) {
      stream.destroy();
      return;
    }
    let buffered = Buffer.alloc(0);
    let upstream: Socket | undefined;
    const close = (): void => {
      stream.destroy();
      upstream?.destroy();
    };
    stream.on('close', () => upstream?.destroy());
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const size = packetSize(buffered);
      if (
        size === 'invalid' ||
        (size === undefined && buffered.length > 5) ||
        (size ?? 0) > MAX_CONNECT_BYTES
      )
        return close();
      if (size === undefined || buffered.length < size) return;
      stream.off('data', onData);
      stream.pause();
      const connect = firstPacket(buffered.subarray(0, size));
      if (connect?.cmd !== 'connect') return close();
      // The login's account, and a client id of its own (clean session): a page cannot take another
      // client's id, such as a site bridge's, and so push that client off the central broker.
      const rewritten: IConnectPacket = {
        ...connect,
        clientId: `${identity.name}.console-${randomBytes(6).toString('hex')}`,
        clean: true,
        username: identity.name,
        password: Buffer.from(password),
      };
      upstream = this.dial();
      upstream.on('error', (error) => {
        this.options.log.debug({ err: error, remote }, 'console: central broker connection failed');
        close();
      });
      upstream.on('close', () => stream.destroy());
      upstream.write(mqttPacket.generate(rewritten));
      const rest = buffered.subarray(size);
      if (rest.length > 0) upstream.write(rest);
      buffered = Buffer.alloc(0);
      stream.pipe(upstream);
      upstream.pipe(stream);
    };
    stream.on('data', onData);
  }

  /**
   * A login is live while this server holds its password: in memory only, so a login restored from
   * the sessions file after a restart is not (the operator logs in again). Revocation is Mosquitto's:
   * a revoked account's page fails at its next connection.
   */
  hasIdentity(identity: Identity): boolean {
    return this.passwords.has(identity);
  }

  private dial(): Socket {
    const { tls, host, port } = this.target;
    if (!tls) return connectTcp({ host, port });
    return connectTls({
      host,
      port,
      ...(this.options.ca ? { ca: [this.options.ca] } : {}),
      ...(isIP(host) === 0 ? { servername: host } : {}),
      minVersion: 'TLSv1.2',
    });
  }
}

/** Bytes of the MQTT packet at the start of `buffer`; undefined while its header is incomplete. */
function packetSize(buffer: Buffer): number | 'invalid' | undefined {
  let remaining = 0;
  for (let i = 1; i <= 4; i++) {
    const byte = buffer[i];
    if (byte === undefined) return undefined;
    remaining += (byte & 0x7f) * 128 ** (i - 1);
    if ((byte & 0x80) === 0) return 1 + i + remaining;
  }
  return 'invalid';
}

function firstPacket(bytes: Buffer): Packet | undefined {
  const parser = mqttPacket.parser();
  let packet: Packet | undefined;
  parser.on('packet', (parsed: Packet) => (packet ??= parsed));
  parser.on('error', () => undefined);
  parser.parse(bytes);
  return packet;
}
