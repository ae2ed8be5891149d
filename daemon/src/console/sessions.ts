// Console logins: a random session id in an HttpOnly, Secure, SameSite=Strict cookie, mapped in memory
// to the identity that logged in. The page never holds a password or a token: its MQTT-over-WebSocket
// connection and its Janus requests are authenticated by the same cookie. Sessions slide (each use
// extends them up to the idle limit) and end at log-out, at the absolute limit, or when the daemon
// restarts (then the operator logs in again).
import { randomBytes } from 'node:crypto';
import type { Identity } from '../mqtt/identities.js';

export const SESSION_COOKIE = 'outpost_session';
/** A login ends after this long whatever its use: a forgotten console does not stay logged in forever. */
const ABSOLUTE_MS = 7 * 24 * 3600_000;
/** Sessions kept at most (each is a few hundred bytes); the least recently used goes first. */
const MAX_SESSIONS = 1000;

export interface Session {
  id: string;
  identity: Identity;
  createdAt: number;
  lastUsedAt: number;
  /** Called when the session ends: close its MQTT sockets, destroy its Janus sessions. */
  readonly onEnd: Set<() => void>;
}

export class Sessions {
  private readonly byId = new Map<string, Session>();

  constructor(
    private readonly idleMs: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  create(identity: Identity): Session {
    const now = this.now();
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
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
    return session;
  }

  /** The live session for a cookie header, refreshed; undefined when absent, unknown or expired. */
  fromCookie(header: string | undefined): Session | undefined {
    const id = cookieValue(header, SESSION_COOKIE);
    if (!id) return undefined;
    const session = this.byId.get(id);
    if (!session) return undefined;
    const now = this.now();
    if (now - session.lastUsedAt > this.idleMs || now - session.createdAt > ABSOLUTE_MS) {
      this.end(id);
      return undefined;
    }
    session.lastUsedAt = now;
    // Map order is recency order: the least recently used is evicted first.
    this.byId.delete(id);
    this.byId.set(id, session);
    return session;
  }

  end(id: string): void {
    const session = this.byId.get(id);
    if (!session) return;
    this.byId.delete(id);
    for (const callback of session.onEnd) callback();
    session.onEnd.clear();
  }

  /** Every session of `name` (identities reloaded: a revoked account is logged out). */
  endWhere(keep: (identity: Identity) => boolean): void {
    for (const session of [...this.byId.values()]) if (!keep(session.identity)) this.end(session.id);
  }

  endAll(): void {
    for (const id of [...this.byId.keys()]) this.end(id);
  }

  get size(): number {
    return this.byId.size;
  }

  cookie(session: Session): string {
    return `${SESSION_COOKIE}=${session.id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=${Math.floor(ABSOLUTE_MS / 1000)}`;
  }

  static clearedCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`;
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
