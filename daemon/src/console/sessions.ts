// Console logins: a random token in an HttpOnly, Secure, SameSite=Strict cookie, mapped to the identity
// that logged in. The page never holds a password: its MQTT-over-WebSocket connection and its Janus
// requests are authenticated by the same cookie. Sessions slide (each use extends them up to the idle
// limit) and end at log-out, at the absolute limit, or when the account is revoked.
//
// With a file (the hub's data dir), logins survive a restart of the daemon (an update's reboot, a
// crash): the file keeps each login's SHA-256 of its token, never the token, so reading the file gives
// no cookie. Creations and endings are written at once; the last use is written at most once a minute.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, rm } from 'node:fs/promises';
import { z } from 'zod';
import { writeDurably } from '../files.js';
import type { Logger } from '../log.js';
import { ROLES, type Identity } from '../mqtt/identities.js';

export const SESSION_COOKIE = 'outpost_session';
/** A login ends after this long whatever its use: a forgotten console does not stay logged in forever. */
const ABSOLUTE_MS = 7 * 24 * 3600_000;
/** Sessions kept at most (each is a few hundred bytes); the least recently used goes first. */
const MAX_SESSIONS = 1000;
/** Once a minute, expired logins end and the last uses since are saved (the idle limit is hours). */
const TICK_MS = 60_000;

export interface Session {
  /** SHA-256 of the cookie's token (base64url): the key, in memory and in the file. */
  id: string;
  identity: Identity;
  createdAt: number;
  lastUsedAt: number;
  /** Called when the session ends: close its MQTT sockets, destroy its Janus sessions. */
  readonly onEnd: Set<() => void>;
}

export interface SessionsOptions {
  /** A login ends after this long unused. */
  idleMs: number;
  /** Where logins are kept across restarts; absent: in memory only. */
  file?: string;
  log?: Logger;
  now?: () => number;
}

const savedSessions = z.object({
  sessions: z.array(
    z.object({
      id: z.string().min(1),
      identity: z.object({ name: z.string().min(1), role: z.enum(ROLES) }),
      createdAt: z.number(),
      lastUsedAt: z.number(),
    }),
  ),
});

export class Sessions {
  private readonly byId = new Map<string, Session>();
  private readonly now: () => number;
  private saving: Promise<void> = Promise.resolve();
  private tick: NodeJS.Timeout | undefined;
  /** A login was used since the last save. */
  private touched = false;
  private closed = false;

  constructor(private readonly options: SessionsOptions) {
    this.now = options.now ?? (() => Date.now());
  }

  /**
   * The logins of an earlier run, those not expired and whose account `stillValid` keeps (revoked or
   * changed accounts are dropped). An unreadable file is kept as .bad and nobody is logged in.
   */
  async load(stillValid: (identity: Identity) => boolean): Promise<void> {
    const { file, log } = this.options;
    this.closed = false;
    // Expired logins end on their own (their connections close), not only when their cookie comes back.
    this.tick ??= setInterval(() => {
      this.sweep();
      if (this.touched) this.save();
    }, TICK_MS).unref();
    if (!file) return;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      return; // no logins saved yet
    }
    const parsed = savedSessions.safeParse(safeJson(text));
    if (!parsed.success) {
      log?.error(
        { file },
        'console logins file unreadable: everyone logs in again (the file is kept as .bad)',
      );
      await rename(file, `${file}.bad`).catch(() => undefined);
      return;
    }
    for (const saved of parsed.data.sessions) {
      const session = { ...saved, onEnd: new Set<() => void>() };
      if (!this.expired(session) && stillValid(session.identity)) this.byId.set(session.id, session);
    }
    log?.info(
      { logins: this.byId.size, dropped: parsed.data.sessions.length - this.byId.size },
      'console logins restored',
    );
    if (this.byId.size !== parsed.data.sessions.length) this.save();
  }

  /** A new login; the token goes in its cookie (cookie()) and is kept nowhere else. */
  create(identity: Identity): { session: Session; token: string } {
    const now = this.now();
    const token = randomBytes(32).toString('base64url');
    const session: Session = {
      id: hashOf(token),
      identity,
      createdAt: now,
      lastUsedAt: now,
      onEnd: new Set(),
    };
    this.byId.set(session.id, session);
    if (this.byId.size > MAX_SESSIONS) {
      const oldest = this.byId.values().next().value;
      if (oldest) this.end(oldest.id);
    }
    this.save();
    return { session, token };
  }

  /** The live session for a cookie header, refreshed; undefined when absent, unknown or expired. */
  fromCookie(header: string | undefined): Session | undefined {
    const token = cookieValue(header, SESSION_COOKIE);
    if (!token) return undefined;
    const id = hashOf(token);
    const session = this.byId.get(id);
    if (!session) return undefined;
    if (this.expired(session)) {
      this.end(id);
      return undefined;
    }
    session.lastUsedAt = this.now();
    // Map order is recency order: the least recently used is evicted first.
    this.byId.delete(id);
    this.byId.set(id, session);
    this.touched = true;
    return session;
  }

  end(id: string): void {
    const session = this.byId.get(id);
    if (!session) return;
    this.byId.delete(id);
    for (const callback of session.onEnd) callback();
    session.onEnd.clear();
    this.save();
  }

  /** Every session whose identity `keep` refuses (identities reloaded: a revoked account is logged out). */
  endWhere(keep: (identity: Identity) => boolean): void {
    for (const session of [...this.byId.values()]) if (!keep(session.identity)) this.end(session.id);
  }

  /**
   * The daemon stops: every session's connections close, and the logins are saved as they stand, to be
   * restored by the next run's load().
   */
  async close(): Promise<void> {
    clearInterval(this.tick);
    this.tick = undefined;
    this.save();
    this.closed = true;
    for (const session of this.byId.values()) {
      for (const callback of session.onEnd) callback();
      session.onEnd.clear();
    }
    this.byId.clear();
    await this.saving;
  }

  /** Ends every expired login. */
  sweep(): void {
    for (const session of [...this.byId.values()]) if (this.expired(session)) this.end(session.id);
  }

  get size(): number {
    return this.byId.size;
  }

  cookie(token: string): string {
    return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=${Math.floor(ABSOLUTE_MS / 1000)}`;
  }

  static clearedCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`;
  }

  private expired(session: Pick<Session, 'createdAt' | 'lastUsedAt'>): boolean {
    const now = this.now();
    return now - session.lastUsedAt > this.options.idleMs || now - session.createdAt > ABSOLUTE_MS;
  }

  /** Writes the logins as they stand now, after any write under way; a failed write is logged. */
  private save(): void {
    const { file, log } = this.options;
    if (!file || this.closed) return;
    this.touched = false;
    const sessions = [...this.byId.values()].map(({ id, identity, createdAt, lastUsedAt }) => ({
      id,
      identity: { name: identity.name, role: identity.role },
      createdAt,
      lastUsedAt,
    }));
    const text = `${JSON.stringify({ sessions })}\n`;
    this.saving = this.saving
      .then(() => writeDurably(file, text, { makeFolder: true }))
      .catch(async (error: unknown) => {
        // The old file may still hold a login ended since (a log-out, a stolen cookie): delete it (an
        // unlink works on a full disk), so that a restart logs everyone out rather than bring it back.
        await rm(file, { force: true }).catch(() => undefined);
        log?.error({ err: error, file }, 'console logins not saved: a restart now logs every operator out');
      });
  }
}

function hashOf(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}
