// MQTT framing on each connection, between the socket and Aedes: the size of one packet is checked on
// the byte stream before the parser buffers it (a 200 MB "remaining length" costs nothing), and each
// QoS 1 PUBACK Aedes writes is held until the message is stored. Aedes's own guards (in-flight, topic
// levels, drain timeout, queue) are set in aedes.ts.
import { Duplex, Transform, type TransformCallback } from 'node:stream';

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
 * Passes bytes through unchanged while following MQTT's framing: a fixed-header byte, then the
 * "remaining length" varint (1–4 bytes, MQTT 3.1.1 §2.2.3), then that many bytes. Errors with
 * FramingError as soon as a header announces more than `limit` bytes, and on a varint longer than 4;
 * with UnsupportedProtocolLevel when the first packet is a CONNECT no MQTT version sends.
 * `admit()` false holds the chunk until it turns true: backpressure from the broker to the socket.
 */
export function packetSizeGuard(limit: number, admit: () => boolean = () => true): Transform {
  let state: 'type' | 'length' | 'body' = 'type';
  let length = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let left = 0;
  let first = true;
  return new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      if (first) {
        first = false;
        const level = connectLevel(chunk);
        if (level !== undefined && level !== 3 && level !== 4 && level !== 5) {
          done(new UnsupportedProtocolLevel(`CONNECT with protocol level ${level}`));
          return;
        }
      }
      let i = 0;
      while (i < chunk.length) {
        if (state === 'type') {
          state = 'length';
          length = 0;
          multiplier = 1;
          lengthBytes = 0;
          i += 1;
        } else if (state === 'length') {
          const byte = chunk[i] ?? 0;
          i += 1;
          length += (byte & 0x7f) * multiplier;
          multiplier *= 128;
          lengthBytes += 1;
          if (length + 1 + lengthBytes > limit) {
            done(
              new FramingError(
                `MQTT packet of ${length + 1 + lengthBytes} bytes exceeds the ${limit}-byte limit`,
              ),
            );
            return;
          }
          if ((byte & 0x80) === 0) {
            left = length;
            state = left === 0 ? 'type' : 'body';
          } else if (lengthBytes === 4) {
            done(new FramingError('malformed MQTT remaining length (more than 4 bytes)'));
            return;
          }
        } else {
          const take = Math.min(left, chunk.length - i);
          left -= take;
          i += take;
          if (left === 0) state = 'type';
        }
      }
      // Hold the bytes (and so stop reading the socket) while the broker says it is too far behind.
      const pass = (): void => {
        if (admit() || this.destroyed) done(null, chunk);
        else setTimeout(pass, 1);
      };
      pass();
    },
  });
}

/** MQTT 3.1.1 PUBACK: fixed header 0x40, remaining length 2, then the message id (§3.4). */
const PUBACK = 0x40;
const PUBACK_BYTES = 4;

interface HeldAck {
  messageId: number;
  bytes: Buffer;
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
 * connection follows MQTT framing on the way out and holds each PUBACK until the broker's `published`
 * hook says that message is through (`released(messageId)`), then sends the PUBACKs in the order Aedes
 * wrote them (§4.6: in the order the PUBLISHes arrived). Other packets pass straight through. A
 * publish that fails (the store cannot write) disconnects the client with its PUBACK unsent.
 */
export class GuardedConnection extends Duplex {
  // Framing of the outgoing bytes.
  private outState: 'type' | 'length' | 'body' = 'type';
  private outLength = 0;
  private outMultiplier = 1;
  private outLeft = 0;
  /** The bytes of a PUBACK being written, until all four are in. */
  private ack: number[] | undefined;
  private readonly held: HeldAck[] = [];
  private corked = false;
  /** Released before Aedes's PUBACK reached this stream (it was still buffered): id → count. */
  private readonly releasedEarly = new Map<number, number>();

  constructor(
    private readonly socket: Duplex,
    private readonly guard: Transform,
  ) {
    super();
    socket.pipe(guard);
    guard.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) guard.pause();
    });
    guard.once('end', () => this.push(null));
    // A peer that sent its last packets and a FIN ends the stream normally (guard 'end' → EOF for
    // Aedes, after it has read everything buffered); only an abrupt close discards what is unread.
    socket.once('close', () => {
      if (!socket.readableEnded) this.destroy();
    });
  }

  override _read(): void {
    this.guard.resume();
  }

  /** The broker has stored (and handed on) the QoS 1 message `messageId` this client published. */
  released(messageId: number): void {
    const waiting = this.held.find((ack) => ack.messageId === messageId && !ack.released);
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

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.socket.destroyed) {
      done(new Error('connection closed'));
      return;
    }
    this.corkSocket();
    if (this.pass(chunk)) done();
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
    for (const { chunk } of chunks) flowing = this.pass(chunk) && flowing;
    if (flowing) done();
    else this.socket.once('drain', done);
  }

  /**
   * mqtt-packet writes a packet in several pieces (header, length, topic, payload): corked until the
   * end of this tick, they leave as one write (one TLS record, one syscall) instead of many.
   */
  private corkSocket(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(uncorkConnection, this);
  }

  /** Follow the framing of `chunk` and write it on, holding PUBACKs; false when the socket is full. */
  private pass(chunk: Buffer): boolean {
    // No closures here: this runs for every piece of every packet (bench:broker's allocation profile).
    let flowing = true;
    let start = 0;
    let i = 0;
    while (i < chunk.length) {
      const byte = chunk[i] ?? 0;
      if (this.ack) {
        this.ack.push(byte);
        i += 1;
        start = i;
        if (this.ack.length === PUBACK_BYTES) {
          this.holdAck(Buffer.from(this.ack));
          this.ack = undefined;
          flowing = this.sendReleasedAcks() && flowing;
        }
      } else if (this.outState === 'type') {
        if (byte === PUBACK) {
          if (i > start && !this.socket.write(chunk.subarray(start, i))) flowing = false;
          this.ack = [byte];
          i += 1;
          start = i;
        } else {
          this.outState = 'length';
          this.outLength = 0;
          this.outMultiplier = 1;
          i += 1;
        }
      } else if (this.outState === 'length') {
        this.outLength += (byte & 0x7f) * this.outMultiplier;
        this.outMultiplier *= 128;
        i += 1;
        if ((byte & 0x80) === 0) {
          this.outLeft = this.outLength;
          this.outState = this.outLeft === 0 ? 'type' : 'body';
        }
      } else {
        const take = Math.min(this.outLeft, chunk.length - i);
        this.outLeft -= take;
        i += take;
        if (this.outLeft === 0) this.outState = 'type';
      }
    }
    if (start < chunk.length && !this.socket.write(start === 0 ? chunk : chunk.subarray(start)))
      flowing = false;
    return flowing;
  }

  /** (For corkSocket's nextTick.) The end of the tick in which the first write corked the socket. */
  uncorkSocket(): void {
    this.corked = false;
    this.socket.uncork();
  }

  private holdAck(bytes: Buffer): void {
    const messageId = ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
    const early = this.releasedEarly.get(messageId) ?? 0;
    if (early > 1) this.releasedEarly.set(messageId, early - 1);
    else this.releasedEarly.delete(messageId);
    this.held.push({ messageId, bytes, released: early > 0 });
  }

  /** Send the PUBACKs at the head of the queue whose messages are stored; false when the socket is full. */
  private sendReleasedAcks(): boolean {
    let flowing = true;
    while (this.held[0]?.released === true) {
      const ack = this.held.shift();
      if (ack && !this.socket.destroyed && !this.socket.write(ack.bytes)) flowing = false;
    }
    return flowing;
  }

  override _final(done: (error?: Error | null) => void): void {
    this.socket.end();
    done();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.socket.destroy();
    done(error);
  }
}

function uncorkConnection(connection: GuardedConnection): void {
  connection.uncorkSocket();
}
