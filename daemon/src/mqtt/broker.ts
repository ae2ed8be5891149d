// The embedded MQTT broker (Aedes) and its listeners. This first cut serves plain MQTT on loopback
// only, for local clients on the box; the TLS LAN listener, identities, ACL and on-disk persistence
// arrive with provisioning and hang off the same hooks (authenticate, authorizePublish, …).
import { createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';

export class Broker implements Service {
  readonly name = 'broker';
  private aedes: Aedes | undefined;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly settings: Config['broker'],
    private readonly log: Logger,
  ) {}

  /** The address actually bound (the port is known after start, even when 0 was asked for). */
  address(): { host: string; port: number } | undefined {
    const address = this.server?.address();
    return address && typeof address === 'object' ? { host: address.address, port: address.port } : undefined;
  }

  async start(): Promise<void> {
    const aedes = await Aedes.createBroker({});
    aedes.on('clientError', (client, error) =>
      this.log.debug({ client: client.id, err: error }, 'mqtt client error'),
    );
    aedes.on('connectionError', (client, error) =>
      this.log.debug({ client: client.id, err: error }, 'mqtt connection error'),
    );
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      aedes.handle(socket);
    });
    const { host, port } = this.settings.tcp;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      const code = (error as NodeJS.ErrnoException).code;
      throw new OutpostError(
        'START_FAILED',
        `cannot listen for MQTT on ${host}:${port} (${code ?? 'error'})`,
        {
          hint:
            code === 'EADDRINUSE'
              ? 'another broker (mosquitto?) holds the port: stop it or set broker.tcp.port'
              : 'check broker.tcp in the config',
          cause: error,
        },
      );
    }
    server.on('error', (error) => this.log.error({ err: error }, 'mqtt listener error'));
    this.aedes = aedes;
    this.server = server;
    this.log.info({ listener: 'tcp', ...this.address() }, 'mqtt broker listening (plain, loopback only)');
  }

  async stop(): Promise<void> {
    const { aedes, server } = this;
    this.aedes = undefined;
    this.server = undefined;
    // Stop accepting, close the broker, then end every client connection: server.close() completes
    // only when they are gone, and a client should see its broker leave rather than a silent socket.
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  healthy(): boolean {
    return this.server?.listening === true && this.aedes?.closed === false;
  }
}
