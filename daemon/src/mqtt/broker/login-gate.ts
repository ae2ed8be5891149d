// The login gate: password checks (scrypt) run a few at a time, in turn by address, and an address
// that keeps failing on a LAN listener backs off. The broker's authentication (authentication.ts) asks
// it before every password check; certificate and loopback-credential logins cost no scrypt and skip it.

/**
 * Password checks cost scrypt (16 MiB, tens of milliseconds on libuv's small thread pool, which the
 * broker's store and every file read share). At most `concurrency` run at once and at most `queue`
 * wait; a login beyond that is shed at once (the broker answers CONNACK 3, server unavailable), so a
 * flood of logins costs a bounded amount of memory and thread time and cannot push a good client's
 * check behind thousands of bad ones. Waiting checks are served in turn by key (the client's address),
 * and when the queue is full a newcomer takes the last place of the key holding the most places, if
 * that is another key holding more than the newcomer's would after the move: a flood from one address waits behind itself and gives
 * way, and a client from another address finds a place and is checked next.
 */
export class LoginGate {
  private running = 0;
  /** Waiting checks by key, each told whether it got its slot; Map order is the turn. */
  private readonly waiting = new Map<string, Array<(admitted: boolean) => void>>();
  private waitingCount = 0;
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
    return this.waitingCount;
  }

  /**
   * Run `check` when a slot is free; `SHED` when the queue is full (or this check gave its place to
   * another key's), or when `gone()` says the client left while it waited (its check would be wasted).
   */
  async run<T>(key: string, check: () => Promise<T>, gone: () => boolean): Promise<T | typeof SHED> {
    if (this.running >= this.concurrency) {
      if (this.waitingCount >= this.queue && !this.makeRoomFor(key)) return SHED;
      const admitted = await new Promise<boolean>((resolve) => {
        const mine = this.waiting.get(key);
        if (mine) mine.push(resolve);
        else this.waiting.set(key, [resolve]);
        this.waitingCount += 1;
      });
      if (!admitted) return SHED;
      // The slot was handed over by the finishing check (running stays counted).
    } else {
      this.running += 1;
    }
    this.peakInFlight = Math.max(this.peakInFlight, this.running);
    try {
      if (gone()) return SHED;
      return await check();
    } finally {
      const next = this.take(this.waiting.keys().next().value);
      if (next) next(true);
      else this.running -= 1;
    }
  }

  /** Shed the newest waiter of the key holding the most places, if that is not `key` and holds more. */
  private makeRoomFor(key: string): boolean {
    let most: string | undefined;
    for (const [other, list] of this.waiting) {
      if (most === undefined || list.length > (this.waiting.get(most)?.length ?? 0)) most = other;
    }
    const own = this.waiting.get(key)?.length ?? 0;
    if (most === undefined || most === key || (this.waiting.get(most)?.length ?? 0) <= own + 1) return false;
    this.take(most, 'newest')?.(false);
    return true;
  }

  /** Take a waiter of `key` (the oldest: its turn, and the key goes to the back; or the newest). */
  private take(
    key: string | undefined,
    which: 'oldest' | 'newest' = 'oldest',
  ): ((admitted: boolean) => void) | undefined {
    const list = key === undefined ? undefined : this.waiting.get(key);
    if (key === undefined || !list) return undefined;
    const waiter = which === 'oldest' ? list.shift() : list.pop();
    if (which === 'oldest') this.waiting.delete(key);
    if (list.length > 0) {
      if (which === 'oldest') this.waiting.set(key, list);
    } else this.waiting.delete(key);
    this.waitingCount -= 1;
    return waiter;
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
