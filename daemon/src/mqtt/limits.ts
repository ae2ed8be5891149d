// Broker limits that Aedes does not enforce itself: the size of one MQTT packet (checked on the byte
// stream before the parser buffers it, so a 200 MB "remaining length" costs nothing) and a per-client
// publish rate. Aedes's own guards (in-flight, topic levels, drain timeout, queue) are set in broker.ts.
import { Duplex, Transform, type TransformCallback } from 'node:stream';

/** The byte stream broke MQTT framing or announced a packet over the limit. */
export class FramingError extends Error {
  override readonly name = 'FramingError';
}

/**
 * Passes bytes through unchanged while following MQTT's framing: a fixed-header byte, then the
 * "remaining length" varint (1–4 bytes, MQTT 3.1.1 §2.2.3), then that many bytes. Errors with
 * FramingError as soon as a header announces more than `limit` bytes, and on a varint longer than 4.
 * `admit()` false holds the chunk until it turns true: backpressure from the broker to the socket.
 */
export function packetSizeGuard(limit: number, admit: () => boolean = () => true): Transform {
  let state: 'type' | 'length' | 'body' = 'type';
  let length = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let left = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
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

/**
 * The stream Aedes reads and writes for one client: bytes from the socket pass through `guard` before
 * Aedes's parser sees them; Aedes's replies go straight to the socket. (Node's `Duplex.from` pairing
 * lost the last chunk now and then under Aedes's `read(null)`-on-'readable' reading: a QoS 1 publish
 * that never got its PUBACK.)
 */
export class GuardedConnection extends Duplex {
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

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.socket.destroyed) {
      done(new Error('connection closed'));
      return;
    }
    if (this.socket.write(chunk)) done();
    else this.socket.once('drain', () => done());
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

/**
 * A token bucket: `ratePerSecond` sustained, bursts up to twice that. `take()` is false when the
 * client has gone over; the broker then disconnects it.
 */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = ratePerSecond * 2;
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(
      this.ratePerSecond * 2,
      this.tokens + ((now - this.last) / 1000) * this.ratePerSecond,
    );
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Password checks cost scrypt (16 MiB, tens of milliseconds on libuv's small thread pool, which the
 * broker's store and every file read share). At most `concurrency` run at once and at most `queue`
 * wait; a login beyond that is shed at once (the broker answers CONNACK 3, server unavailable), so a
 * flood of logins costs a bounded amount of memory and thread time and cannot push a good client's
 * check behind thousands of bad ones.
 */
export class LoginGate {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** Most checks ever in flight at once (what the memory bound rests on). */
  peakInFlight = 0;

  constructor(
    private readonly concurrency: number,
    private readonly queue: number,
  ) {}

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Run `check` when a slot is free; `SHED` when the queue is full, or when `gone()` says the client
   * left while it waited (its check would be wasted).
   */
  async run<T>(check: () => Promise<T>, gone: () => boolean): Promise<T | typeof SHED> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.queue) return SHED;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      // The slot was handed over by the finishing check (running stays counted).
    } else {
      this.running += 1;
    }
    this.peakInFlight = Math.max(this.peakInFlight, this.running);
    try {
      if (gone()) return SHED;
      return await check();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }
}

export const SHED = Symbol('shed');

/**
 * Repeated bad passwords from one address: after `FAILURES_BEFORE_BACKOFF` in a row, password logins
 * from it are refused without a check for a backoff that doubles from 1 s to 60 s; a good login clears
 * it. The broker applies it on its LAN listeners only: on loopback every local tool shares one address.
 * At most 10,000 addresses are remembered (the oldest forgotten first).
 */
export class FailureBackoff {
  private readonly byAddress = new Map<string, { failures: number; until: number }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Milliseconds left before `address` may try a password again (0: go ahead). */
  wait(address: string): number {
    const entry = this.byAddress.get(address);
    return entry ? Math.max(0, entry.until - this.now()) : 0;
  }

  failed(address: string): void {
    const entry = this.byAddress.get(address) ?? { failures: 0, until: 0 };
    this.byAddress.delete(address); // re-inserted last: Map order is age order
    entry.failures += 1;
    if (entry.failures >= FAILURES_BEFORE_BACKOFF) {
      const doublings = Math.min(entry.failures - FAILURES_BEFORE_BACKOFF, 6);
      entry.until = this.now() + Math.min(1000 * 2 ** doublings, 60_000);
    }
    this.byAddress.set(address, entry);
    if (this.byAddress.size > 10_000) {
      const oldest = this.byAddress.keys().next().value;
      if (oldest !== undefined) this.byAddress.delete(oldest);
    }
  }

  succeeded(address: string): void {
    this.byAddress.delete(address);
  }
}

export const FAILURES_BEFORE_BACKOFF = 5;
