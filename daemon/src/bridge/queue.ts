// The site bridge's store and forward: every message bound for the operations centre waits here, on
// disk, until the central broker has taken it. It survives a daemon restart and a kill -9, and hands
// messages back in the order they arrived.
//
// Bounded by bytes (payload + topic). When a message does not fit, the oldest message of the lowest
// class goes (BRIDGE_CLASSES: telemetry first, then clip chunks, replies, retained state, manifests;
// alerts and chat last); a message is never dropped for one of a lower class, and each drop is counted
// by class (persisted with the store). A retained state (a box's status, a camera's state) replaces the
// queued one of the same topic that has not been sent yet: only the newest state matters.
//
// Durability: a QoS 1 message is written to LevelDB's log (in the OS, past a kill -9 of the daemon)
// before put() resolves; the bridge acknowledges it to the site broker only then. Its fsync (past a
// power cut) is put()'s `sync`: with 'now', put() resolves after the fsync (puts arriving together share
// one); with 'later', the fsync is taken only if the message is still queued SYNC_DELAY_MS afterwards,
// or at once on sync() (normally the centre has it by then, and an SD card is spared an fsync a
// message). A QoS 0 message (telemetry) is written only if it is still waiting a second later: while
// the link is up it leaves from memory and never touches the SD card. Deletes are not fsynced (after a
// power cut the worst case is one message sent twice, which QoS 1 allows).
//
// Disk: LevelDB keys `q!{seq}` (zero-padded: key order is arrival order) → a binary record (class,
// QoS, retain, topic, payload); `d!{class}` → drops of that class; `w!{filter}` → the bridge's
// on-demand clip windows (bridge.ts).
import { Level } from 'level';
import { BRIDGE_CLASSES, type BridgeClass } from '../config/schema.js';
import { LEVEL_MEMORY } from '../mqtt/level-store.js';

export interface BridgeMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  /** Retained at the central broker. */
  retain: boolean;
  cls: BridgeClass;
}

/** A message handed to the sender: `seq` is what ack() takes. */
export interface Outgoing extends BridgeMessage {
  seq: number;
}

export type ClassCounts = Record<BridgeClass, number>;

export interface QueueStats {
  messages: number;
  bytes: number;
  maxBytes: number;
  /** Dropped because the store was full, by class, since the store was created. */
  dropped: ClassCounts;
  /** States replaced by a newer one of the same topic before they were sent (not a loss). */
  superseded: number;
}

/** Payload bytes kept in memory for the sender beyond those not yet on disk. */
const CACHE_BYTES = 4 * 1024 * 1024;
/** A QoS 0 message still waiting this long is written to disk. */
const QOS0_WRITE_DELAY_MS = 1000;
/** A QoS 1 message put with `sync: 'later'` and still queued this long is fsynced. */
const SYNC_DELAY_MS = 100;
/** Stored messages read from disk at once when the sender catches up with the disk (a replay). */
const READ_AHEAD = 128;

/** Deleted with sync: a record in LevelDB's log whose only purpose is the fsync. */
const SYNC_KEY = 's!';
const CLASS_INDEX = new Map<BridgeClass, number>(BRIDGE_CLASSES.map((cls, i) => [cls, i]));
const RECORD_VERSION = 1;

interface Entry {
  seq: number;
  cls: BridgeClass;
  bytes: number;
  /** State class only: the topic, to replace an older unsent state. */
  topic: string | undefined;
  /** In memory: not yet written, or cached for the sender. */
  message: BridgeMessage | undefined;
  /** On disk (or its write is queued). */
  stored: boolean;
  /** Handed to the sender and not acknowledged yet. */
  sent: boolean;
  removed: boolean;
}

type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

export class BridgeQueue {
  private readonly db: Level<string, Uint8Array>;
  private nextSeq = 0;
  /** Per class, oldest first: what is queued. Removed entries are skipped (and shed at the front). */
  private readonly lanes: Lane[] = BRIDGE_CLASSES.map(() => new Lane());
  private readonly bySeq = new Map<number, Entry>();
  private readonly latestState = new Map<string, Entry>();
  private count = 0;
  private total = 0;
  private cached = 0;
  private readonly droppedCounts = zeroCounts();
  private supersededCount = 0;
  /** Writes waiting for the next batch, and who waits for them to be durable. */
  private pending: Op[] = [];
  private pendingSync = false;
  private pendingWaiters: Array<() => void> = [];
  private writing: Promise<void> = Promise.resolve();
  private flushScheduled = false;
  private lazyTimer: NodeJS.Timeout | undefined;
  private readonly lazy = new Set<Entry>();
  /** QoS 1 messages written (in the OS) but not fsynced yet, and the timer that fsyncs them. */
  private readonly unsynced = new Set<Entry>();
  private syncTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private readonly maxBytes: number;
  /** A write failed (disk full, I/O error): the messages stay in memory and are still sent. */
  private readonly onWriteError: (error: Error) => void;
  /** A message was queued: the sender may have work. */
  private readonly onQueued: () => void;

  constructor(deps: {
    directory: string;
    maxBytes: number;
    onWriteError: (error: Error) => void;
    onQueued?: () => void;
  }) {
    this.maxBytes = deps.maxBytes;
    this.onWriteError = deps.onWriteError;
    this.onQueued = deps.onQueued ?? (() => undefined);
    this.db = new Level<string, Uint8Array>(deps.directory, { valueEncoding: 'view', ...LEVEL_MEMORY });
  }

  async open(): Promise<void> {
    await this.db.open();
    for await (const [key, value] of this.db.iterator({ gte: 'd!', lt: 'd~' })) {
      const cls = key.slice(2) as BridgeClass;
      if (CLASS_INDEX.has(cls)) this.droppedCounts[cls] = Number(Buffer.from(value).toString());
    }
    for await (const [key, value] of this.db.iterator({ gte: 'q!', lt: 'q~' })) {
      const seq = Number(key.slice(2));
      const message = decode(value);
      if (!message) continue; // an unknown record version: left alone, never sent
      const entry = this.admit(seq, message, true);
      entry.message = undefined;
      this.nextSeq = seq + 1;
    }
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.total;
  }

  stats(): QueueStats {
    return {
      messages: this.count,
      bytes: this.total,
      maxBytes: this.maxBytes,
      dropped: { ...this.droppedCounts },
      superseded: this.supersededCount,
    };
  }

  /**
   * Queue a message. QoS 1: resolves once it is written (a kill -9 cannot lose it) and, with `sync`
   * 'now', fsynced (a power cut cannot either); with 'later' the fsync follows (see Durability above).
   * QoS 0: resolves at once. A message that does not fit even after dropping every lower class is
   * itself dropped (and counted).
   */
  put(message: BridgeMessage, sync: 'now' | 'later' = 'now'): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the bridge store is closed'));
    const bytes = sizeOf(message);
    const rank = rankOf(message.cls);
    if (message.cls === 'state') {
      const older = this.latestState.get(message.topic);
      if (older && !older.sent && !older.removed) {
        this.remove(older);
        this.supersededCount += 1;
      }
    }
    while (this.total + bytes > this.maxBytes) {
      const victim = this.oldestOfLowestClass();
      if (!victim || rankOf(victim.cls) > rank || bytes > this.maxBytes) {
        this.countDrop(message.cls);
        return Promise.resolve();
      }
      this.remove(victim);
      this.countDrop(victim.cls);
    }
    const entry = this.admit(this.nextSeq++, message, false);
    if (message.qos === 1) {
      entry.stored = true;
      const done = this.write({ type: 'put', key: keyOf(entry.seq), value: encode(message) }, sync === 'now');
      if (sync === 'later') {
        this.unsynced.add(entry);
        this.syncTimer ??= setTimeout(() => void this.sync(), SYNC_DELAY_MS);
      }
      this.onQueued();
      return done;
    }
    this.lazy.add(entry);
    this.lazyTimer ??= setTimeout(() => this.storeLazy(), QOS0_WRITE_DELAY_MS);
    this.onQueued();
    return Promise.resolve();
  }

  /** Something is waiting to be sent. */
  hasNext(): boolean {
    return this.nextEntry() !== undefined;
  }

  /**
   * The oldest message not yet handed to the sender, marked as sent; undefined when there is none.
   * Call one at a time (it may read from disk): messages come out in arrival order.
   */
  async next(): Promise<Outgoing | undefined> {
    const entry = this.nextEntry();
    if (!entry) return undefined;
    entry.sent = true;
    if (!entry.message) await this.readAhead(entry);
    const message = entry.message;
    if (!message) {
      // Lost from disk (an I/O error): nothing to send; forget it like an acknowledged one.
      this.ack(entry.seq);
      return this.next();
    }
    return { ...message, seq: entry.seq };
  }

  /** The central broker has the message (PUBACK; for QoS 0, written to the socket). */
  ack(seq: number): void {
    const entry = this.bySeq.get(seq);
    if (entry && !entry.removed) this.remove(entry);
  }

  /** The link dropped: every message in flight is sent again, from the oldest, on the next link. */
  rewind(): void {
    for (const lane of this.lanes) {
      for (const entry of lane.entries()) {
        // In flight is a prefix of each lane: messages leave in arrival order.
        if (!entry.sent) break;
        entry.sent = false;
      }
    }
  }

  /**
   * fsync the messages put with `sync: 'later'` that are still queued (the link dropped, or they waited
   * SYNC_DELAY_MS): one small synchronous write makes LevelDB's log durable up to it.
   */
  sync(): Promise<void> {
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    const waiting = [...this.unsynced].some((entry) => !entry.removed);
    this.unsynced.clear();
    return waiting ? this.write({ type: 'del', key: SYNC_KEY }, true) : Promise.resolve();
  }

  /** The on-demand clip windows (bridge.ts): filter → until (ms since the epoch). */
  async windows(): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for await (const [key, value] of this.db.iterator({ gte: 'w!', lt: 'w~' })) {
      found.set(key.slice(2), Number(Buffer.from(value).toString()));
    }
    return found;
  }

  saveWindow(filter: string, until: number | undefined): Promise<void> {
    const key = `w!${filter}`;
    return until === undefined
      ? this.write({ type: 'del', key }, false)
      : this.write({ type: 'put', key, value: Buffer.from(String(until)) }, true);
  }

  /** Write what is pending (QoS 0 messages still queued included) and close. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.storeLazy();
    void this.sync();
    this.closed = true;
    await this.flush();
    await this.writing;
    if (this.db.status === 'open') await this.db.close();
  }

  private admit(seq: number, message: BridgeMessage, stored: boolean): Entry {
    const entry: Entry = {
      seq,
      cls: message.cls,
      bytes: sizeOf(message),
      topic: message.cls === 'state' ? message.topic : undefined,
      message,
      stored,
      sent: false,
      removed: false,
    };
    this.lanes[rankOf(message.cls)]?.push(entry);
    this.bySeq.set(seq, entry);
    if (entry.topic !== undefined) this.latestState.set(entry.topic, entry);
    this.count += 1;
    this.total += entry.bytes;
    this.cached += entry.bytes;
    return entry;
  }

  private remove(entry: Entry): void {
    entry.removed = true;
    this.bySeq.delete(entry.seq);
    this.lazy.delete(entry);
    this.unsynced.delete(entry);
    if (entry.topic !== undefined && this.latestState.get(entry.topic) === entry) {
      this.latestState.delete(entry.topic);
    }
    this.count -= 1;
    this.total -= entry.bytes;
    if (entry.message) this.cached -= entry.bytes;
    entry.message = undefined;
    this.lanes[rankOf(entry.cls)]?.shed();
    if (entry.stored) void this.write({ type: 'del', key: keyOf(entry.seq) }, false);
  }

  private nextEntry(): Entry | undefined {
    let best: Entry | undefined;
    for (const lane of this.lanes) {
      const entry = lane.firstUnsent();
      if (entry && (!best || entry.seq < best.seq)) best = entry;
    }
    return best;
  }

  private oldestOfLowestClass(): Entry | undefined {
    for (const lane of this.lanes) {
      const entry = lane.first();
      if (entry) return entry;
    }
    return undefined;
  }

  private countDrop(cls: BridgeClass): void {
    this.droppedCounts[cls] += 1;
    void this.write(
      { type: 'put', key: `d!${cls}`, value: Buffer.from(String(this.droppedCounts[cls])) },
      false,
    );
  }

  /** Read `entry` and the stored messages after it that are not in memory (a replay from disk). */
  private async readAhead(entry: Entry): Promise<void> {
    await this.flush();
    await this.writing;
    // The next READ_AHEAD entries in arrival order, merged from the lanes, that are not in memory.
    const cursors = this.lanes.map((lane) => lane.entries()[Symbol.iterator]());
    const heads = cursors.map((cursor) => advance(cursor, entry.seq));
    const wanted: Entry[] = [];
    while (wanted.length < READ_AHEAD) {
      let pick = -1;
      heads.forEach((head, i) => {
        if (head && (pick < 0 || head.seq < (heads[pick]?.seq ?? Infinity))) pick = i;
      });
      const head = heads[pick];
      const cursor = cursors[pick];
      if (!head || !cursor) break;
      if (!head.message && !head.removed) wanted.push(head);
      heads[pick] = advance(cursor, entry.seq);
    }
    if (wanted.length === 0) return;
    const values = await this.db.getMany(wanted.map((e) => keyOf(e.seq))).catch((error: Error) => {
      this.onWriteError(error);
      return wanted.map(() => undefined);
    });
    wanted.forEach((candidate, i) => {
      const value = values[i];
      const message = value ? decode(value) : undefined;
      if (message && !candidate.removed && !candidate.message) {
        candidate.message = message;
        this.cached += candidate.bytes;
      }
    });
  }

  /** QoS 0 messages still waiting after QOS0_WRITE_DELAY_MS go to disk. */
  private storeLazy(): void {
    clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    for (const entry of this.lazy) {
      if (entry.removed || !entry.message) continue;
      entry.stored = true;
      void this.write({ type: 'put', key: keyOf(entry.seq), value: encode(entry.message) }, false);
    }
    this.lazy.clear();
  }

  /** Queue one write for the next batch; resolves once that batch is on disk. */
  private write(op: Op, sync: boolean): Promise<void> {
    if (this.closed && op.type === 'put' && op.key.startsWith('q!')) {
      return Promise.reject(new Error('the bridge store is closed'));
    }
    this.pending.push(op);
    this.pendingSync ||= sync;
    const done = new Promise<void>((resolve) => this.pendingWaiters.push(resolve));
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => void this.flush());
    }
    return done;
  }

  /** One LevelDB batch per turn of the event loop, one fsync for all of it; batches in order. */
  private flush(): Promise<void> {
    this.flushScheduled = false;
    if (this.pending.length === 0) return this.writing;
    const ops = this.pending;
    const sync = this.pendingSync;
    const waiters = this.pendingWaiters;
    this.pending = [];
    this.pendingSync = false;
    this.pendingWaiters = [];
    this.writing = this.writing
      .then(() => (this.db.status === 'open' ? this.db.batch(ops, { sync }) : undefined))
      .catch((error: Error) => this.onWriteError(error))
      .finally(() => {
        for (const resolve of waiters) resolve();
        // Past the cache budget, payloads now on disk may leave memory.
        if (this.cached > CACHE_BYTES) this.trimCache();
      });
    return this.writing;
  }

  /** Payloads already on disk leave memory, newest first in each lane (the oldest are sent first). */
  private trimCache(): void {
    for (const lane of this.lanes) {
      for (const entry of lane.newestFirst()) {
        if (this.cached <= CACHE_BYTES) return;
        if (entry.message && entry.stored && !entry.sent && !entry.removed && !this.lazy.has(entry)) {
          this.cached -= entry.bytes;
          entry.message = undefined;
        }
      }
    }
  }
}

/** One class's entries, oldest first: an array with a moving front (Array#shift is O(n)). */
class Lane {
  private items: Entry[] = [];
  private head = 0;

  push(entry: Entry): void {
    this.items.push(entry);
  }

  /** The oldest entry still queued. */
  first(): Entry | undefined {
    this.shed();
    return this.items[this.head];
  }

  /** The oldest entry not removed and not handed to the sender. */
  firstUnsent(): Entry | undefined {
    for (let i = this.head; i < this.items.length; i += 1) {
      const entry = this.items[i];
      if (entry && !entry.removed && !entry.sent) return entry;
    }
    return undefined;
  }

  *entries(): Generator<Entry> {
    for (let i = this.head; i < this.items.length; i += 1) {
      const entry = this.items[i];
      if (entry && !entry.removed) yield entry;
    }
  }

  *newestFirst(): Generator<Entry> {
    for (let i = this.items.length - 1; i >= this.head; i -= 1) {
      const entry = this.items[i];
      if (entry) yield entry;
    }
  }

  /** Drop removed entries at the front; compact once the dead front is half the array. */
  shed(): void {
    while (this.head < this.items.length && this.items[this.head]?.removed) this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

/** The next entry from `cursor` at or after `seq`. */
function advance(cursor: Iterator<Entry>, seq: number): Entry | undefined {
  for (let next = cursor.next(); !next.done; next = cursor.next())
    if (next.value.seq >= seq) return next.value;
  return undefined;
}

function zeroCounts(): ClassCounts {
  return Object.fromEntries(BRIDGE_CLASSES.map((cls) => [cls, 0])) as ClassCounts;
}

function rankOf(cls: BridgeClass): number {
  return CLASS_INDEX.get(cls) ?? 0;
}

function sizeOf(message: BridgeMessage): number {
  return message.payload.length + Buffer.byteLength(message.topic);
}

function keyOf(seq: number): string {
  return `q!${String(seq).padStart(16, '0')}`;
}

/** [version, class, flags (bit 0 QoS 1, bit 1 retain), topic length (2 bytes BE), topic, payload]. */
function encode(message: BridgeMessage): Uint8Array {
  const topic = Buffer.from(message.topic);
  const head = Buffer.alloc(5);
  head[0] = RECORD_VERSION;
  head[1] = rankOf(message.cls);
  head[2] = (message.qos === 1 ? 1 : 0) | (message.retain ? 2 : 0);
  head.writeUInt16BE(topic.length, 3);
  return Buffer.concat([head, topic, message.payload]);
}

function decode(value: Uint8Array): BridgeMessage | undefined {
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (bytes.length < 5 || bytes[0] !== RECORD_VERSION) return undefined;
  const cls = BRIDGE_CLASSES[bytes[1] ?? 255];
  if (!cls) return undefined;
  const flags = bytes[2] ?? 0;
  const topicLength = bytes.readUInt16BE(3);
  return {
    cls,
    qos: flags & 1 ? 1 : 0,
    retain: (flags & 2) !== 0,
    topic: bytes.subarray(5, 5 + topicLength).toString(),
    payload: Buffer.from(bytes.subarray(5 + topicLength)),
  };
}
