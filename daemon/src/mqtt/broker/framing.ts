// MQTT framing on each connection, between the socket and Aedes: the size of one packet is checked on
// the byte stream before the parser buffers it (a 200 MB "remaining length" costs nothing), the common
// packets are decoded without mqtt-packet's per-packet garbage (FastParser), and each QoS 1 PUBACK
// Aedes writes is held until the message is stored. Aedes's own guards (in-flight, topic levels, drain
// timeout, queue) are set in aedes.ts.
import { isUtf8 } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';

/** The byte stream broke MQTT framing or announced a packet over the limit. */
export class FramingError extends Error {
  override readonly name = 'FramingError';
}

/**
 * The first packet is a CONNECT for a protocol level no MQTT version has (3.1 is 3, 3.1.1 is 4, 5 is
 * 5). mqtt-packet refuses to parse it, so Aedes would close the connection without a word; the broker
 * answers CONNACK 0x01 (unacceptable protocol level) and closes instead [MQTT-3.1.2-2].
 */
export class UnsupportedProtocolLevel extends Error {
  override readonly name = 'UnsupportedProtocolLevel';
  /** CONNACK, return code 0x01, session present 0 (MQTT 3.1.1 §3.2). */
  static readonly CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x01]);
}

/** The protocol level of a CONNECT at the start of `chunk`, when its name is MQTT's; else undefined. */
function connectLevel(chunk: Buffer): number | undefined {
  if (chunk[0] !== 0x10) return undefined;
  let at = 1;
  while (at < 5 && ((chunk[at] ?? 0) & 0x80) !== 0) at += 1;
  at += 1;
  const nameLength = ((chunk[at] ?? 0) << 8) | (chunk[at + 1] ?? 0);
  const name = chunk.toString('latin1', at + 2, at + 2 + nameLength);
  const level = chunk[at + 2 + nameLength];
  return (name === 'MQTT' || name === 'MQIsdp') && level !== undefined ? level : undefined;
}

/**
 * Follows MQTT's framing of the bytes a client sends: a fixed-header byte, then the "remaining length"
 * varint (1–4 bytes, MQTT 3.1.1 §2.2.3), then that many bytes. `check` returns a FramingError as soon as
 * a header announces more than `limit` bytes, and on a varint longer than 4; an
 * UnsupportedProtocolLevel when the first packet is a CONNECT no MQTT version sends.
 */
export class SizeGuard {
  private state: 0 | 1 | 2 = 0; // type byte, remaining length, body
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private left = 0;
  private first = true;

  constructor(private readonly limit: number) {}

  check(chunk: Buffer): Error | undefined {
    if (this.first) {
      this.first = false;
      const level = connectLevel(chunk);
      if (level !== undefined && level !== 3 && level !== 4 && level !== 5) {
        return new UnsupportedProtocolLevel(`CONNECT with protocol level ${level}`);
      }
    }
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 0) {
        this.state = 1;
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        i += 1;
      } else if (this.state === 1) {
        const byte = chunk[i] as number;
        i += 1;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes += 1;
        const size = this.length + 1 + this.lengthBytes;
        if (size > this.limit) {
          return new FramingError(`MQTT packet of ${size} bytes exceeds the ${this.limit}-byte limit`);
        }
        if ((byte & 0x80) === 0) {
          this.left = this.length;
          this.state = this.left === 0 ? 0 : 2;
        } else if (this.lengthBytes === 4) {
          return new FramingError('malformed MQTT remaining length (more than 4 bytes)');
        }
      } else {
        const take = Math.min(this.left, chunk.length - i);
        this.left -= take;
        i += take;
        if (this.left === 0) this.state = 0;
      }
    }
    return undefined;
  }
}

/** The outgoing batch's size: a TLS record's worth of PUBLISHes. */
const BATCH_BYTES = 16 * 1024;
/** A tick's first batch: most ticks carry a packet or two to a client. */
const FIRST_BATCH_BYTES = 1024;
const EMPTY = Buffer.alloc(0);

/** Bytes of a PUBLISH before its payload: fixed header, remaining length, topic, packet id. */
function publishHeaderSize(topicBytes: number, qos: number, payloadBytes: number): number {
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadBytes;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  return 1 + lengthBytes + 2 + topicBytes + (qos > 0 ? 2 : 0);
}

/**
 * Write a PUBLISH's header into `into` at `at` (MQTT 3.1.1 §3.3: type 3 with DUP 0, the QoS and RETAIN
 * flags, the remaining length, the topic, the packet id when QoS > 0); returns where the payload goes.
 */
function writePublishHeader(
  into: Buffer,
  at: number,
  topic: string,
  topicBytes: number,
  payloadBytes: number,
  qos: number,
  retain: boolean,
  messageId: number,
): number {
  into[at++] = 0x30 | (qos << 1) | (retain ? 1 : 0);
  let left = 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadBytes;
  do {
    let byte = left % 128;
    left = Math.floor(left / 128);
    if (left > 0) byte |= 0x80;
    into[at++] = byte;
  } while (left > 0);
  into[at++] = topicBytes >> 8;
  into[at++] = topicBytes & 0xff;
  at += into.write(topic, at, 'utf8');
  if (qos > 0) {
    into[at++] = messageId >> 8;
    into[at++] = messageId & 0xff;
  }
  return at;
}

/** A whole PUBLISH in one new buffer (with its payload when `withPayload`). */
export function encodePublish(
  topic: string,
  payload: Buffer,
  qos: 0 | 1 | 2,
  retain: boolean,
  messageId: number,
  withPayload: boolean,
): Buffer {
  const topicBytes = Buffer.byteLength(topic);
  const header = publishHeaderSize(topicBytes, qos, payload.length);
  const bytes = Buffer.allocUnsafe(header + (withPayload ? payload.length : 0));
  const at = writePublishHeader(bytes, 0, topic, topicBytes, payload.length, qos, retain, messageId);
  if (withPayload) payload.copy(bytes, at);
  return bytes;
}

interface HeldAck {
  messageId: number;
  /** The broker has finished publishing (stored) the message this PUBACK acknowledges. */
  released: boolean;
}

/**
 * The stream Aedes reads and writes for one client: bytes from the socket pass through `guard` before
 * Aedes's parser sees them; Aedes's replies go to the socket. (Node's `Duplex.from` pairing lost the
 * last chunk now and then under Aedes's `read(null)`-on-'readable' reading: a QoS 1 publish that never
 * got its PUBACK.)
 *
 * **PUBACK after the message is stored.** Aedes 1.x writes a QoS 1 PUBACK *before* it stores the
 * message (retained, queued for offline persistent sessions): a `kill -9` or a power cut in between
 * lost a message the client had been told was safe (a console away during an alert never got it). The
 * PUBACK Aedes writes is taken here instead (`holdPuback`, called by aedes.ts for every PUBACK Aedes
 * writes) and sent once the broker's `published` hook says that message is through
 * (`released(messageId)`), the PUBACKs in the order Aedes wrote them (§4.6: in the order the PUBLISHes
 * arrived). Other packets pass straight through. A publish that fails (the store cannot write)
 * disconnects the client with its PUBACK unsent.
 */
export class GuardedConnection extends Duplex {
  private readonly held: HeldAck[] = [];
  private corked = false;
  private tickEnding = false;
  /** Released before its PUBACK was held (not seen with Aedes 1.2; kept for safety): id → count. */
  private readonly releasedEarly = new Map<number, number>();
  /**
   * This tick's outgoing packets (writePublish, released PUBACKs), sent at the end of the tick. Empty
   * between ticks: an idle connection holds no buffer.
   */
  private batch = EMPTY;
  private batchLength = 0;
  /** A 'drain' listener is on the socket already (endTick). */
  private awaitingSocketDrain = false;
  /** writePublish said the socket was full: 'drain' is owed once it is not. */
  private owesDrain = false;

  private readonly admit: () => boolean;
  private readonly onRefused: (error: Error) => void;

  /**
   * `maxPacketBytes`: the largest packet accepted (SizeGuard). `admit()` false holds the bytes read
   * (and so stops reading the socket) until it turns true: backpressure from the broker to the socket.
   * `onRefused` hears why the bytes were refused; the socket is then ended (after a CONNACK 0x01 for an
   * UnsupportedProtocolLevel) or destroyed.
   */
  constructor(
    private readonly socket: Duplex,
    options: {
      maxPacketBytes: number;
      admit?: () => boolean;
      onRefused?: (error: Error) => void;
    },
  ) {
    super();
    this.admit = options.admit ?? (() => true);
    this.onRefused = options.onRefused ?? (() => undefined);
    const guard = new SizeGuard(options.maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const refused = guard.check(chunk);
      if (refused) {
        socket.removeAllListeners('data');
        socket.pause();
        this.onRefused(refused);
        if (refused instanceof UnsupportedProtocolLevel) socket.end(UnsupportedProtocolLevel.CONNACK);
        else socket.destroy();
        return;
      }
      if (!this.push(chunk)) socket.pause();
      else if (!this.admit()) this.holdReading();
    });
    // A peer that sent its last packets and a FIN ends the stream normally (EOF for Aedes, after it has
    // read everything buffered); only an abrupt close discards what is unread.
    socket.once('end', () => this.push(null));
    socket.once('close', () => {
      if (!socket.readableEnded) this.destroy();
    });
  }

  override _read(): void {
    if (!this.holding) this.socket.resume();
  }

  private holding = false;

  /** The broker is too far behind: stop reading until admit() says otherwise (checked every 1 ms). */
  private holdReading(): void {
    this.holding = true;
    this.socket.pause();
    const retry = (): void => {
      if (this.destroyed || this.admit()) {
        this.holding = false;
        this.socket.resume();
      } else setTimeout(retry, 1);
    };
    setTimeout(retry, 1);
  }

  /** The PUBACK of `messageId`, written by Aedes: held until released(messageId). */
  holdPuback(messageId: number): boolean {
    const early = this.releasedEarly.get(messageId) ?? 0;
    if (early > 1) this.releasedEarly.set(messageId, early - 1);
    else if (early === 1) this.releasedEarly.delete(messageId);
    this.held.push({ messageId, released: early > 0 });
    return this.sendReleasedAcks();
  }

  /** The broker has stored (and handed on) the QoS 1 message `messageId` this client published. */
  released(messageId: number): void {
    const head = this.held[0];
    const waiting =
      head?.messageId === messageId && !head.released
        ? head
        : this.held.find((ack) => ack.messageId === messageId && !ack.released);
    if (waiting) {
      waiting.released = true;
      this.sendReleasedAcks();
    } else {
      this.releasedEarly.set(messageId, (this.releasedEarly.get(messageId) ?? 0) + 1);
    }
  }

  /** PUBACKs awaiting their message's storage (for tests and diagnostics). */
  get heldAcks(): number {
    return this.held.length;
  }

  /**
   * A PUBLISH from the broker's own delivery (aedes.ts), encoded straight into this tick's batch of
   * outgoing packets, which leaves as one write at the end of the tick (corkSocket): one buffer and one
   * socket write for all of a tick's deliveries to this client instead of one each. A payload over
   * 4 KiB is written after its header as it is, without a copy. False when the socket is full; this
   * stream emits 'drain' once it has drained (Aedes's waitForDrain listens here).
   */
  writePublish(topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, messageId: number): boolean {
    if (this.writableLength > 0 || this.writableCorked > 0 || this.socket.destroyed) {
      // mqtt-packet's pieces are queued in this stream ahead of it: keep the order.
      return this.write(encodePublish(topic, payload, qos, retain, messageId, true));
    }
    const topicBytes = Buffer.byteLength(topic);
    const inline = payload.length <= 4096;
    const size = publishHeaderSize(topicBytes, qos, payload.length) + (inline ? payload.length : 0);
    if (this.batchLength + size > this.batch.length) this.growBatch(size);
    if (size > this.batch.length) {
      this.socket.write(encodePublish(topic, payload, qos, retain, messageId, true));
    } else {
      this.batchLength = writePublishHeader(
        this.batch,
        this.batchLength,
        topic,
        topicBytes,
        payload.length,
        qos,
        retain,
        messageId,
      );
      if (inline) this.batchLength += payload.copy(this.batch, this.batchLength);
      else this.flushBatch(payload);
      this.endTickLater();
    }
    if (this.socket.writableLength + this.batchLength < this.socket.writableHighWaterMark) return true;
    this.owesDrain = true;
    return false;
  }

  /**
   * Room for `size` more bytes: a first batch of a tick is small (from Node's shared pool); one that
   * overflows is sent and followed by a full-size one.
   */
  private growBatch(size: number): void {
    const first = this.batch === EMPTY;
    this.flushBatch();
    this.batch = Buffer.allocUnsafe(first ? Math.max(FIRST_BATCH_BYTES, size) : BATCH_BYTES);
  }

  /** Hand this tick's batch (and `then`, a large payload to follow it) to the socket. */
  private flushBatch(then?: Buffer): void {
    if (this.batchLength > 0 && !this.socket.destroyed) {
      // The socket owns the written bytes until they are sent: the next batch is a new buffer.
      this.socket.write(this.batch.subarray(0, this.batchLength));
    }
    this.batch = EMPTY;
    this.batchLength = 0;
    if (then && !this.socket.destroyed) this.socket.write(then);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.socket.destroyed) {
      done(new Error('connection closed'));
      return;
    }
    this.corkSocket();
    if (this.socket.write(chunk)) done();
    else this.socket.once('drain', done);
  }

  /** mqtt-packet corks this stream for each packet's pieces: they arrive here together. */
  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    done: (error?: Error | null) => void,
  ): void {
    if (this.socket.destroyed) {
      done(new Error('connection closed'));
      return;
    }
    this.corkSocket();
    let flowing = true;
    for (const { chunk } of chunks) flowing = this.socket.write(chunk) && flowing;
    if (flowing) done();
    else this.socket.once('drain', done);
  }

  /**
   * mqtt-packet writes a packet in pieces (header, length, topic, payload): the socket is corked until
   * the end of the tick, so they leave as one write (one TLS record, one syscall) instead of many.
   */
  private corkSocket(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    this.endTickLater();
  }

  /** The batch goes at the end of this tick (endTick). */
  private endTickLater(): void {
    if (this.tickEnding) return;
    this.tickEnding = true;
    process.nextTick(endConnectionTick, this);
  }

  /** (For endTickLater's nextTick.) The batch goes out after any corked pieces, then the socket uncorks. */
  endTick(): void {
    this.tickEnding = false;
    this.flushBatch();
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
    if (!this.owesDrain) return;
    this.owesDrain = false;
    if (!this.socket.writableNeedDrain) process.nextTick(() => this.emit('drain'));
    else if (!this.awaitingSocketDrain) {
      // One listener however many ticks end with the socket still full: its 'drain' answers them all.
      this.awaitingSocketDrain = true;
      this.socket.once('drain', () => {
        this.awaitingSocketDrain = false;
        this.emit('drain');
      });
    }
  }

  /** Send the PUBACKs at the head of the queue whose messages are stored; false when the socket is full. */
  private sendReleasedAcks(): boolean {
    let count = 0;
    while (this.held[count]?.released === true) count += 1;
    if (count === 0 || this.socket.destroyed) return true;
    if (this.batchLength + 4 * count > this.batch.length) this.growBatch(4 * count);
    // MQTT 3.1.1 PUBACK (§3.4): 0x40, remaining length 2, the packet id. Into this tick's batch.
    for (const ack of this.held.splice(0, count)) {
      this.batch[this.batchLength++] = 0x40;
      this.batch[this.batchLength++] = 2;
      this.batch[this.batchLength++] = ack.messageId >> 8;
      this.batch[this.batchLength++] = ack.messageId & 0xff;
    }
    this.endTickLater();
    return this.socket.writableLength + this.batchLength < this.socket.writableHighWaterMark;
  }

  override _final(done: (error?: Error | null) => void): void {
    this.flushBatch();
    this.socket.end();
    done();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.socket.destroy();
    done(error);
  }
}

function endConnectionTick(connection: GuardedConnection): void {
  connection.endTick();
}

/** What of mqtt-packet's Parser the fast parser hands packets to and hears from. */
export interface PacketParser {
  parse(buffer: Buffer): number;
  on(event: 'packet', listener: (packet: unknown) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The flags MQTT 3.1.1 requires in the fixed header of each packet type (§2.2.2); PUBLISH's vary. */
const REQUIRED_FLAGS = [-1, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0];

function headerAllowed(first: number): boolean {
  const type = first >> 4;
  return type === 3 ? ((first >> 1) & 3) !== 3 : REQUIRED_FLAGS[type] === (first & 0x0f);
}

/** A decoded packet, with the fields (and their order) of mqtt-packet's Packet. */
interface DecodedPacket {
  readonly cmd: 'publish' | 'puback' | 'pingreq';
  readonly retain: boolean;
  readonly qos: 0 | 1 | 2;
  readonly dup: boolean;
  readonly length: number;
  readonly topic: string | null;
  readonly payload: Buffer | null;
  readonly messageId: number | undefined;
}

/** One literal shape for every decoded packet (its fields always in this order). */
function decodedPacket(
  cmd: DecodedPacket['cmd'],
  retain: boolean,
  qos: 0 | 1 | 2,
  dup: boolean,
  length: number,
  topic: string | null,
  payload: Buffer | null,
  messageId: number | undefined,
): DecodedPacket {
  return { cmd, retain, qos, dup, length, topic, payload, messageId };
}

/**
 * The parser Aedes reads each client's packets with (aedes.ts puts it in the place of the client's
 * mqtt-packet parser). mqtt-packet allocates several objects for every packet it parses: an offset
 * pair per read from its BufferList, an argument array for each of the ~10 `debug()` lines a packet
 * passes (even with debugging off), a copy of a payload that spans two chunks; under bench:broker's
 * QoS 0 flood that was over half of the broker's allocations and a quarter of its CPU in garbage
 * collection. This one decodes the packets that make up the traffic (PUBLISH, PUBACK, PINGREQ, MQTT
 * 3.1.1 §3.3, §3.4, §3.12) into one object each, the payload a view of the bytes read, and hands every
 * other packet (CONNECT, SUBSCRIBE, …, and anything unusual about these three) whole to mqtt-packet,
 * so validation and errors stay mqtt-packet's. It emits what mqtt-packet would: 'packet' and 'error'.
 */
export class FastParser extends EventEmitter {
  /** Aedes keeps these two on its parser (lib/client.js): its listeners read them as `this.…`. */
  client: unknown;
  _queue: unknown[] | null = null;
  /** Bytes of an incomplete packet, and how many the packet needs (0: its header is incomplete). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private needed = 0;
  private failed = false;
  /** The last PUBLISH topic decoded, and its bytes (topicAt). */
  private lastTopic = '';
  private lastTopicBytes = EMPTY;

  constructor(private readonly fallback: PacketParser) {
    super();
    fallback.on('packet', (packet) => this.emit('packet', packet));
    fallback.on('error', (error) => {
      this.failed = true;
      this.emit('error', error);
    });
  }

  parse(chunk: Buffer): number {
    if (this.failed) return 0;
    let bytes = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.needed > 0 && this.pendingBytes < this.needed) return this.pendingBytes;
      bytes = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let at = 0;
    while (at < bytes.length && !this.failed) {
      // Fixed header: the type byte, then the remaining length (1–4 bytes, §2.2.3). A type byte with
      // flags the spec forbids goes to mqtt-packet at once, which closes the connection on it
      // [MQTT-2.2.2-2] without waiting for the body its length announces.
      if (!headerAllowed(bytes[at] as number)) {
        this.fallback.parse(bytes.subarray(at));
        return 0;
      }
      let remaining = 0;
      let multiplier = 1;
      let i = at + 1;
      let complete = false;
      while (i < bytes.length && i <= at + 4) {
        const byte = bytes[i] as number;
        remaining += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        i += 1;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete && i > at + 4) {
        // A remaining length of more than 4 bytes: mqtt-packet reports it.
        this.fallback.parse(bytes.subarray(at));
        return 0;
      }
      const end = i + remaining;
      if (!complete || end > bytes.length) {
        this.pending.push(bytes.subarray(at));
        this.pendingBytes = bytes.length - at;
        this.needed = complete ? end - at : 0;
        return this.pendingBytes;
      }
      if (!this.decode(bytes, at, i, end)) this.fallback.parse(bytes.subarray(at, end));
      at = end;
    }
    return 0;
  }

  /**
   * The topic in bytes[start, end), or undefined when it is not well-formed UTF-8 or holds U+0000 (the
   * connection is then closed [MQTT-1.5.3-1] [MQTT-1.5.3-2] [MQTT-4.7.3-2]; mqtt-packet decoded bad
   * bytes to U+FFFD). A client publishes on a few topics over and over: bytes equal to the last topic's
   * give the same string again, checked and decoded once (no string, check or copy per message; and a
   * string seen before has its hash for the broker's Map lookups by topic).
   */
  private topicAt(bytes: Buffer, start: number, end: number): string | undefined {
    const last = this.lastTopicBytes;
    if (end - start === last.length) {
      let i = 0;
      while (i < last.length && bytes[start + i] === last[i]) i += 1;
      if (i === last.length) return this.lastTopic;
    }
    const raw = bytes.subarray(start, end);
    if (!isUtf8(raw) || raw.includes(0)) return undefined;
    this.lastTopic = raw.toString('utf8');
    // A copy of its own (not a slice of Node's shared 8 KiB pool, which it would keep alive): the bytes
    // read are a view of a chunk the parser does not keep.
    this.lastTopicBytes = Buffer.allocUnsafeSlow(raw.length);
    raw.copy(this.lastTopicBytes);
    return this.lastTopic;
  }

  /** Emit the packet in bytes[start, end) if it is one decoded here; false to leave it to mqtt-packet. */
  private decode(bytes: Buffer, start: number, body: number, end: number): boolean {
    const first = bytes[start] as number;
    const length = end - body;
    switch (first >> 4) {
      case 3: {
        const qos = (first >> 1) & 3;
        if (qos === 3 || length < 2) return false;
        const topicEnd = body + 2 + bytes.readUInt16BE(body);
        const payloadStart = qos > 0 ? topicEnd + 2 : topicEnd;
        if (payloadStart > end) return false;
        const topic = this.topicAt(bytes, body + 2, topicEnd);
        if (topic === undefined) {
          this.failed = true;
          this.emit('error', new Error('PUBLISH topic is not well-formed UTF-8 or holds U+0000'));
          return true;
        }
        this.emit(
          'packet',
          decodedPacket(
            'publish',
            (first & 1) !== 0,
            qos as 0 | 1 | 2,
            (first & 8) !== 0,
            length,
            topic,
            bytes.subarray(payloadStart, end),
            qos > 0 ? bytes.readUInt16BE(topicEnd) : undefined,
          ),
        );
        return true;
      }
      case 4:
        if (first !== 0x40 || length !== 2) return false;
        this.emit(
          'packet',
          decodedPacket('puback', false, 0, false, 2, null, null, bytes.readUInt16BE(body)),
        );
        return true;
      case 12:
        if (first !== 0xc0 || length !== 0) return false;
        this.emit('packet', decodedPacket('pingreq', false, 0, false, 0, null, null, undefined));
        return true;
      default:
        return false;
    }
  }
}
