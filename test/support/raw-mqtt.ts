// A bare MQTT 3.1.1 peer for tests that need to see the broker's exact bytes: packets are written with
// mqtt-packet (or as raw bytes, to break the rules on purpose) on a loopback TCP socket, and every
// packet the broker sends back is parsed and kept in order, with the QoS and flags it came with.
import { createConnection, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

/** A packet from the broker, with the fields of every kind the tests look at. */
export interface Received {
  cmd: Packet['cmd'];
  returnCode?: number;
  sessionPresent?: boolean;
  granted?: number[];
  topic?: string;
  payload?: Buffer;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
}

export class RawClient {
  readonly received: Received[] = [];
  private readonly waiters: Array<() => void> = [];
  private ended = false;

  private constructor(private readonly socket: Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet: Packet) => {
      this.received.push(packet as unknown as Received);
      this.wake();
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static open(port: number, localAddress?: string): Promise<RawClient> {
    const socket = createConnection({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** The broker closed the connection (or this side did). */
  get closed(): boolean {
    return this.ended;
  }

  /** The local port of this connection (to find it in `ss`). */
  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  send(packet: Record<string, unknown> | Buffer): void {
    this.socket.write(Buffer.isBuffer(packet) ? packet : mqttPacket.generate(packet as unknown as Packet));
  }

  /** The first packet received (or still to come) matching `cmd` and `where`, after `from`; bounded. */
  async next(
    cmd: string,
    where: (packet: Received) => boolean = () => true,
    ms = 5000,
    from = 0,
  ): Promise<Received> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.received.slice(from).find((packet) => packet.cmd === cmd && where(packet));
      if (found) return found;
      if (this.ended) throw new Error(`connection closed before a ${cmd} arrived`);
      if (Date.now() >= deadline) throw new Error(`no ${cmd} within ${ms} ms`);
      await this.wait(deadline - Date.now());
    }
  }

  /** Resolves true once the connection is closed, false if it is still open after `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.ended && Date.now() < deadline) await this.wait(deadline - Date.now());
    return this.ended;
  }

  /** Every PUBLISH received so far on `topic`. */
  publishes(topic: string): Received[] {
    return this.received.filter((packet) => packet.cmd === 'publish' && packet.topic === topic);
  }

  end(): void {
    this.socket.destroy();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

export interface ConnectFields {
  clientId?: string;
  clean?: boolean;
  keepalive?: number;
  username?: string;
  password?: string;
  protocolVersion?: number;
  will?: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean };
}

/**
 * A CONNECT encoded by hand (MQTT 3.1.1 §3.1): mqtt-packet refuses to write some packets a broker must
 * answer (a zero-byte client id with clean session 0).
 */
export function connectBytes(fields: ConnectFields): Buffer {
  const string = (text: string | Buffer): Buffer => {
    const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const will = fields.will;
  const flags =
    (fields.username === undefined ? 0 : 0x80) |
    (fields.password === undefined ? 0 : 0x40) |
    (will?.retain ? 0x20 : 0) |
    ((will?.qos ?? 0) << 3) |
    (will ? 0x04 : 0) |
    ((fields.clean ?? true) ? 0x02 : 0);
  const keepalive = fields.keepalive ?? 30;
  const body = Buffer.concat([
    string('MQTT'),
    Buffer.from([fields.protocolVersion ?? 4, flags, keepalive >> 8, keepalive & 0xff]),
    string(fields.clientId ?? ''),
    ...(will ? [string(will.topic), string(will.payload)] : []),
    ...(fields.username === undefined ? [] : [string(fields.username)]),
    ...(fields.password === undefined ? [] : [string(fields.password)]),
  ]);
  const length: number[] = [];
  let left = body.length;
  do {
    let byte = left % 128;
    left = Math.floor(left / 128);
    if (left > 0) byte |= 0x80;
    length.push(byte);
  } while (left > 0);
  return Buffer.concat([Buffer.from([0x10, ...length]), body]);
}

/** Open a connection, send CONNECT, and wait for the CONNACK (or the close). */
export async function rawConnect(
  port: number,
  fields: ConnectFields,
): Promise<{ client: RawClient; connack: Received | undefined }> {
  const client = await RawClient.open(port);
  client.send(connectBytes(fields));
  try {
    return { client, connack: await client.next('connack') };
  } catch {
    return { client, connack: undefined };
  }
}
