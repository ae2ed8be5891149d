// MQTT.js's outgoing Store on disk (level): QoS 1/2 packets the uplink has published but the broker has
// not yet acknowledged, including everything published while the hub was unreachable. It survives a
// daemon restart and a kill -9, and hands packets back in the order they were first stored, which is
// the order MQTT.js resends them in after reconnecting.
//
// Keys: `p!{seq}` (zero-padded, so level's byte order is insertion order) → the packet;
// `m!{messageId}` → its seq, so put/get/del by message id find the packet. A second put with the same
// message id (QoS 2 PUBLISH replaced by its PUBREL) keeps the original position.
//
// **Write-behind.** `put` answers at once and the write (fsynced) follows in the background, in order:
// MQTT.js sends a packet only after the store's callback, so waiting for the disk put an fsync (and
// every clip chunk queued before it) between a panic press and its alert on the wire, which issue 7
// forbids. Durability is unchanged where it matters: until the write lands the packet exists only in
// memory either way, and a delete (PUBACK) is queued behind its put; a replay after a reconnect or a
// restart reads the disk only after the writes in flight. A write that fails is reported to
// `onWriteError`; the packet still goes out.
import { Readable } from 'node:stream';
import { Level } from 'level';
import { UniqueMessageIdProvider, type IClientOptions, type IStore, type Packet } from 'mqtt';

/** MQTT.js's message-id provider interface (not exported by name). */
type IMessageIdProvider = NonNullable<IClientOptions['messageIdProvider']>;

interface Row {
  packet: Record<string, unknown>;
  /** Publish payloads are kept as base64: JSON has no bytes. */
  payload?: string;
}

/**
 * LevelDB's defaults (an 8 MB block cache and a 4 MB memtable per database) are sized for servers. The
 * broker's and the uplink's stores hold kilobytes to a few megabytes of small records, read mostly at
 * start: 1 MB each keeps up (bench:broker, QoS 1 with persistent sessions) and takes ~10 MB less RSS.
 */
export const LEVEL_MEMORY = { cacheSize: 1 << 20, writeBufferSize: 1 << 20 } as const;

export class LevelStore implements IStore {
  private readonly db: Level<string, string>;
  private nextSeq = 0;
  /** messageId → seq, mirrored in memory from the `m!` keys. */
  private readonly seqOf = new Map<number, number>();
  /** seq → bytes of its stored record, and their sum (for /metrics). */
  private readonly sizeOf = new Map<number, number>();
  private storedBytes = 0;
  /**
   * Writes go to level one after another, in call order: a del and a later put for the same message id
   * must not land the other way round, and createStream() waits for writes still in flight so its
   * snapshot holds every packet put before it.
   */
  private writes: Promise<unknown> = Promise.resolve();
  private pendingWrites = 0;
  private replayedCount = 0;
  private closing: Promise<void> | undefined;

  private queue<T>(write: () => Promise<T>): Promise<T> {
    this.pendingWrites += 1;
    const next = this.writes.then(write, write).finally(() => (this.pendingWrites -= 1));
    this.writes = next.catch(() => undefined);
    return next;
  }

  /**
   * Packets handed back to MQTT.js since the last call: the ones it resent after (re)connecting. It
   * emits `connect` only once that replay is done, so at `connect` this is the whole count.
   */
  takeReplayed(): number {
    const count = this.replayedCount;
    this.replayedCount = 0;
    return count;
  }

  /** Puts and deletes not yet on disk. */
  get busy(): boolean {
    return this.pendingWrites > 0;
  }

  /** Resolves once every write queued so far is done. */
  flushed(): Promise<void> {
    return this.writes.then(() => undefined);
  }

  constructor(
    directory: string,
    /** fsync each write: alerts must survive a power cut, not just a crash. */
    private readonly sync = true,
    /** A background write failed (disk full, I/O error): the packet is not on disk. */
    private readonly onWriteError: (error: Error, messageId: number) => void = () => undefined,
  ) {
    this.db = new Level<string, string>(directory, { valueEncoding: 'utf8', ...LEVEL_MEMORY });
  }

  /** Open and index the store; call before handing it to MQTT.js. */
  async open(): Promise<void> {
    await this.db.open();
    for await (const [key, value] of this.db.iterator({ gte: 'm!', lt: 'm~' })) {
      this.seqOf.set(Number(key.slice(2)), Number(value));
    }
    for await (const [key, value] of this.db.iterator({ gte: 'p!', lt: 'p~' }))
      this.sized(Number(key.slice(2)), value.length);
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

  /** Bytes of the packets held (as stored: JSON, payload in base64). */
  get bytes(): number {
    return this.storedBytes;
  }

  private sized(seq: number, bytes: number | undefined): void {
    this.storedBytes += (bytes ?? 0) - (this.sizeOf.get(seq) ?? 0);
    if (bytes === undefined) this.sizeOf.delete(seq);
    else this.sizeOf.set(seq, bytes);
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
    const value = encode(packet);
    this.sized(seq, value.length);
    this.queue(() =>
      this.db.batch(
        [
          { type: 'put', key: packetKey(seq), value },
          { type: 'put', key: `m!${messageId}`, value: String(seq) },
        ],
        { sync: this.sync },
      ),
    ).catch((error: Error) => this.onWriteError(error, messageId));
    process.nextTick(cb);
    return this;
  }

  get(packet: Pick<Packet, 'messageId'>, cb: (error?: Error, packet?: Packet) => void): this {
    const seq = packet.messageId === undefined ? undefined : this.seqOf.get(packet.messageId);
    if (seq === undefined) {
      cb(new Error('missing packet'));
      return this;
    }
    // After the writes in flight (write-behind): the packet may not have reached the disk yet.
    this.writes
      .then(() => this.db.get(packetKey(seq)))
      .then(
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
    this.sized(seq, undefined);
    const key = packetKey(seq);
    this.queue(async () => {
      const value = await this.db.get(key);
      // No fsync for a delete: after a power cut the worst case is one resend, which QoS 1 allows.
      await this.db.batch([
        { type: 'del', key },
        { type: 'del', key: `m!${messageId}` },
      ]);
      return value;
    }).then(
      (value) => (value === undefined ? cb(new Error('missing packet')) : cb(undefined, decode(value))),
      (error: Error) => cb(error),
    );
    return this;
  }

  /** The stored packets in insertion order, as MQTT.js reads them after a (re)connect. */
  createStream(): ReturnType<IStore['createStream']> {
    const db = this.db;
    const written = this.writes;
    const replayed = (): void => void (this.replayedCount += 1);
    async function* packets(): AsyncGenerator<Packet> {
      await written;
      for await (const value of db.values({ gte: 'p!', lt: 'p~' })) {
        replayed();
        yield decode(value);
      }
    }
    // MQTT.js types its streams with readable-stream's Readable; Node's has the same reading interface.
    return Readable.from(packets(), { objectMode: true }) as unknown as ReturnType<IStore['createStream']>;
  }

  /**
   * Close after the writes already queued: a delete queued by a PUBACK that arrived just before close
   * would otherwise fail, and the acknowledged packet would be sent again by the next run. Both
   * MQTT.js (at the end of client.end) and the uplink call this; the second call waits for the first.
   */
  close(cb: (error?: Error) => void): void {
    this.closing ??= this.flushed().then(async () => {
      if (this.db.status !== 'closed' && this.db.status !== 'closing') await this.db.close();
    });
    this.closing.then(
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

/**
 * MQTT.js's message-id provider for a client with an on-disk store. MQTT.js clears its provider at
 * every CONNACK and registers stored ids only as it replays them, so in between a new publish could
 * be given the id of a stored packet not yet replayed, and the store would overwrite that packet (an
 * alert lost). Here ids held in the store stay reserved across clear(): allocate() skips them, and the
 * replay's register() of a reserved id succeeds once.
 */
export class StoreMessageIds implements IMessageIdProvider {
  private readonly inner = new UniqueMessageIdProvider();
  private readonly reserved = new Set<number>();

  constructor(private readonly store: { messageIds(): number[] }) {
    this.reserve();
  }

  allocate(): number | null {
    return this.inner.allocate();
  }

  getLastAllocated(): number | null {
    return this.inner.getLastAllocated();
  }

  register(messageId: number): boolean {
    if (this.reserved.delete(messageId)) return true;
    return this.inner.register(messageId);
  }

  deallocate(messageId: number): void {
    this.reserved.delete(messageId);
    this.inner.deallocate(messageId);
  }

  clear(): void {
    this.inner.clear();
    this.reserved.clear();
    this.reserve();
  }

  private reserve(): void {
    for (const id of this.store.messageIds()) if (this.inner.register(id)) this.reserved.add(id);
  }
}
