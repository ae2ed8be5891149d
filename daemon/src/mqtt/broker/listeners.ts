// The broker's listeners: plain MQTT on loopback only, MQTT over TLS and MQTT over secure WebSocket on
// the LAN (hub role, TLS 1.2+ with the site's certificate). Each accepted socket is bounded
// (broker.limits.maxConnections), set for request/acknowledge traffic and for finding dead peers, and
// wrapped in its framing guard (framing.ts) before the broker sees it. What each connection is
// (listener, TLS socket, remote address, a console login) is kept for authentication. The site
// console's HTTPS server hands its MQTT-over-WebSocket streams in too (acceptSession).
import { readFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Config } from '../../config/schema.js';
import { OutpostError } from '../../errors.js';
import { listen } from '../../lifecycle/listen.js';
import type { Identity } from '../identities.js';
import { GuardedConnection, UnsupportedProtocolLevel } from './framing.js';

export type ListenerKind = 'tcp' | 'mqtts' | 'wss';

/** What the broker knows of a connection before its CONNECT. */
export interface ConnectionInfo {
  kind: ListenerKind;
  /** The TLS socket underneath (mqtts, wss): its verified client certificate names an identity. */
  tls: TLSSocket | undefined;
  remote: string;
  /** A stream from the site console's HTTPS server: its login (session cookie) names the identity. */
  session?: Identity;
}

export interface ListenersDeps {
  settings: Config['broker'];
  log: Logger;
  /** A new connection, framed: hand it to Aedes. */
  onConnection: (connection: GuardedConnection) => void;
  /** False while the broker is too far behind to read more from its clients (framing.ts holds bytes). */
  admit: () => boolean;
  /** A client dropped for breaking the framing or the packet-size limit. */
  onFramingError: () => void;
}

export class Listeners {
  private readonly servers = new Map<ListenerKind, Server | HttpsServer>();
  private wss: WebSocketServer | undefined;
  private readonly sockets = new Set<Duplex>();
  private readonly connections = new WeakMap<object, ConnectionInfo>();
  private accepting = false;

  constructor(private readonly deps: ListenersDeps) {}

  /** What `connection` (Aedes's `client.conn`) is; undefined for one these listeners did not accept. */
  connectionOf(connection: unknown): ConnectionInfo | undefined {
    return typeof connection === 'object' && connection !== null
      ? this.connections.get(connection)
      : undefined;
  }

  /** A listener's address (the port is known after start, even when 0 was asked). */
  address(kind: ListenerKind): { host: string; port: number } | undefined {
    const address = this.servers.get(kind)?.address();
    return address && typeof address === 'object' ? { host: address.address, port: address.port } : undefined;
  }

  kinds(): ListenerKind[] {
    return [...this.servers.keys()];
  }

  listening(): boolean {
    return [...this.servers.values()].every((server) => server.listening);
  }

  async start(): Promise<void> {
    const { settings } = this.deps;
    const tls = settings.tls ? await readTlsMaterial(settings.tls) : undefined;
    this.accepting = true;
    try {
      await this.open(
        'tcp',
        settings.tcp.host,
        settings.tcp.port,
        createServer((s) => this.accept('tcp', s)),
      );
      if (settings.mqtts && tls) {
        const server = createTlsServer(
          { ...tls, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
          (socket) => this.accept('mqtts', socket, socket),
        );
        await this.open('mqtts', settings.mqtts.host, settings.mqtts.port, server);
      }
      if (settings.wss && tls) {
        const server = createHttpsServer({
          ...tls,
          requestCert: true,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
        });
        const wss = new WebSocketServer({ server, maxPayload: settings.limits.maxPacketBytes + 16 });
        wss.on('error', (error) => this.deps.log.error({ err: error }, 'mqtt websocket server error'));
        wss.on('connection', (socket, request) => {
          const stream = createWebSocketStream(socket);
          this.accept('wss', stream, request.socket as TLSSocket, request.socket.remoteAddress);
        });
        this.wss = wss;
        await this.open('wss', settings.wss.host, settings.wss.port, server);
      }
    } catch (error) {
      await this.stopAccepting();
      this.closeConnections();
      throw error;
    }
    for (const kind of this.servers.keys()) {
      this.deps.log.info({ listener: kind, ...this.address(kind) }, 'mqtt broker listening');
    }
  }

  /** Stop accepting; resolves once every server has closed, i.e. after closeConnections(). */
  stopAccepting(): Promise<void> {
    this.accepting = false;
    const closed = [...this.servers.values()].map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    );
    this.servers.clear();
    this.wss?.close();
    this.wss = undefined;
    return Promise.all(closed).then(() => undefined);
  }

  /**
   * An MQTT-over-WebSocket stream from the site console's HTTPS server (console/server.ts), for the
   * identity its login named: bounded and framed like a connection to the WSS listener.
   */
  acceptSession(stream: Duplex, tls: TLSSocket | undefined, remote: string, identity: Identity): void {
    this.accept('wss', stream, tls, remote, identity);
  }

  /** End every connection still open (after the broker has said goodbye to its clients). */
  closeConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  private accept(
    kind: ListenerKind,
    stream: Duplex,
    tls?: TLSSocket,
    remoteAddress?: string,
    session?: Identity,
  ): void {
    const { settings, log } = this.deps;
    const remote = remoteAddress ?? (stream as Socket).remoteAddress ?? 'unknown';
    if (!this.accepting || this.sockets.size >= settings.limits.maxConnections) {
      log.warn(
        { listener: kind, remote, max: settings.limits.maxConnections },
        'mqtt connection refused: too many connections',
      );
      stream.destroy();
      return;
    }
    const socket = tls ?? (stream as Socket);
    // MQTT is request/acknowledge: without TCP_NODELAY each PUBACK can wait out a 40 ms delayed ACK.
    socket.setNoDelay?.(true);
    // Finds dead peers whatever keep-alive the client asked for (0 turns MQTT's own check off).
    socket.setKeepAlive?.(true, settings.limits.tcpKeepAliveSeconds * 1000);
    this.sockets.add(stream);
    stream.once('close', () => this.sockets.delete(stream));
    stream.on('error', () => stream.destroy());
    // The connection checks the framing before Aedes's parser sees the bytes; replies go to the socket.
    const connection = new GuardedConnection(stream, {
      maxPacketBytes: settings.limits.maxPacketBytes,
      admit: this.deps.admit,
      onRefused: (error) => {
        if (error instanceof UnsupportedProtocolLevel) {
          log.debug(
            { listener: kind, remote, err: error },
            'mqtt client refused: unacceptable protocol level',
          );
          return;
        }
        this.deps.onFramingError();
        log.warn(
          { listener: kind, remote, err: error },
          'mqtt client sent an oversized or malformed packet: disconnected',
        );
      },
    });
    connection.on('error', () => stream.destroy());
    this.connections.set(connection, { kind, tls, remote, ...(session ? { session } : {}) });
    this.deps.onConnection(connection);
  }

  private async open(
    kind: ListenerKind,
    host: string,
    port: number,
    server: Server | HttpsServer,
  ): Promise<void> {
    await listen(server, { host, port }, `broker.${kind}`, `MQTT (${kind})`);
    server.on('error', (error) => this.deps.log.error({ err: error, listener: kind }, 'mqtt listener error'));
    if (kind !== 'wss')
      server.on('tlsClientError', (error) => this.deps.log.debug({ err: error }, 'tls handshake failed'));
    this.servers.set(kind, server);
  }
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
