// MQTT.js's outgoing Store on disk (level): QoS 1/2 packets the uplink has published but the broker has
// not yet acknowledged, including everything published while the hub was unreachable. It survives a
// daemon restart and a kill -9, and hands packets back in the order they were first stored, which is
// the order MQTT.js resends them in after reconnecting.
//
// Keys: `p!{seq}` (zero-padded, so level's byte order is insertion order) → the packet;
// `m!{messageId}` → its seq, so put/get/del by message id find the packet. A second put with the same
// message id (QoS 2 PUBLISH replaced by its PUBREL) keeps the original position.
import { Readable } from 'node:stream';
import { Level } from 'level';
import type { IStore, Packet } from 'mqtt';

interface Row {
  packet: Record<string, unknown>;
  /** Publish payloads are kept as base64: JSON has no bytes. */
  payload?: string;
}

export class LevelStore implements IStore {
  private readonly db: Level<string, string>;
  private nextSeq = 0;
  /** messageId → seq, mirrored in memory from the `m!` keys. */
  private readonly seqOf = new Map<number, number>();

  constructor(
    directory: string,
    /** fsync each write: alerts must survive a power cut, not just a crash. */
    private readonly sync = true,
  ) {
    this.db = new Level<string, string>(directory, { valueEncoding: 'utf8' });
  }

  /** Open and index the store; call before handing it to MQTT.js. */
  async open(): Promise<void> {
    await this.db.open();
    for await (const [key, value] of this.db.iterator({ gte: 'm!', lt: 'm~' })) {
      this.seqOf.set(Number(key.slice(2)), Number(value));
    }
    for await (const key of this.db.keys({ gte: 'p!', lt: 'p~', reverse: true, limit: 1 })) {
      this.nextSeq = Number(key.slice(2)) + 1;
    }
  }

  /** Message ids held, so a fresh message id provider can avoid them. */
  messageIds(): number[] {
    return [...this.seqOf.keys()];
  }

  get size(): number {
    return this.seqOf.size;
  }

  put(packet: Packet, cb: (error?: Error) => void): this {
    const messageId = packet.messageId;
    if (messageId === undefined) {
      cb(new Error('only packets with a message id are stored'));
      return this;
    }
    const known = this.seqOf.get(messageId);
    const seq = known ?? this.nextSeq++;
    this.seqOf.set(messageId, seq);
    this.db
      .batch(
        [
          { type: 'put', key: packetKey(seq), value: encode(packet) },
          { type: 'put', key: `m!${messageId}`, value: String(seq) },
        ],
        { sync: this.sync },
      )
      .then(
        () => cb(),
        (error: Error) => cb(error),
      );
    return this;
  }

  get(packet: Pick<Packet, 'messageId'>, cb: (error?: Error, packet?: Packet) => void): this {
    const seq = packet.messageId === undefined ? undefined : this.seqOf.get(packet.messageId);
    if (seq === undefined) {
      cb(new Error('missing packet'));
      return this;
    }
    this.db.get(packetKey(seq)).then(
      (value) => (value === undefined ? cb(new Error('missing packet')) : cb(undefined, decode(value))),
      (error: Error) => cb(error),
    );
    return this;
  }

  del(packet: Pick<Packet, 'messageId'>, cb: (error?: Error, packet?: Packet) => void): this {
    const messageId = packet.messageId;
    const seq = messageId === undefined ? undefined : this.seqOf.get(messageId);
    if (messageId === undefined || seq === undefined) {
      cb(new Error('missing packet'));
      return this;
    }
    this.seqOf.delete(messageId);
    const key = packetKey(seq);
    this.db
      .get(key)
      .then(async (value) => {
        // No fsync for a delete: after a power cut the worst case is one resend, which QoS 1 allows.
        await this.db.batch([
          { type: 'del', key },
          { type: 'del', key: `m!${messageId}` },
        ]);
        return value;
      })
      .then(
        (value) => (value === undefined ? cb(new Error('missing packet')) : cb(undefined, decode(value))),
        (error: Error) => cb(error),
      );
    return this;
  }

  /** The stored packets in insertion order, as MQTT.js reads them after a (re)connect. */
  createStream(): ReturnType<IStore['createStream']> {
    const db = this.db;
    async function* packets(): AsyncGenerator<Packet> {
      for await (const value of db.values({ gte: 'p!', lt: 'p~' })) yield decode(value);
    }
    // MQTT.js types its streams with readable-stream's Readable; Node's has the same reading interface.
    return Readable.from(packets(), { objectMode: true }) as unknown as ReturnType<IStore['createStream']>;
  }

  close(cb: (error?: Error) => void): void {
    if (this.db.status === 'closed' || this.db.status === 'closing') {
      cb();
      return;
    }
    this.db.close().then(
      () => cb(),
      (error: Error) => cb(error),
    );
  }
}

function packetKey(seq: number): string {
  return `p!${String(seq).padStart(16, '0')}`;
}

function encode(packet: Packet): string {
  const { payload, ...rest } = packet as Packet & { payload?: Buffer | string };
  const row: Row = { packet: rest };
  if (payload !== undefined) row.payload = Buffer.from(payload).toString('base64');
  return JSON.stringify(row);
}

function decode(value: string): Packet {
  const row = JSON.parse(value) as Row;
  const packet = { ...row.packet } as Record<string, unknown>;
  if (row.payload !== undefined) packet.payload = Buffer.from(row.payload, 'base64');
  return packet as unknown as Packet;
}
