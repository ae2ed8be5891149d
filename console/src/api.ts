// The console's HTTP API on the hub (daemon/src/console/server.ts): login, log-out, who am I, and the
// telemetry history. Everything else travels over MQTT. The session is an HttpOnly cookie the page
// never sees; no password or token is ever stored by the page.
import { takeSessionResponse } from './early.js';

export interface Thresholds {
  temperatureC: { raiseAt: number; clearBelow: number };
  diskPercent: { raiseAt: number; clearBelow: number; criticalAt: number };
  memoryPercent: { raiseAt: number; clearBelow: number };
}

export interface SessionInfo {
  username: string;
  role: 'console' | 'staff' | 'admin';
  /** The hub's site; at the centre, the centre's name. */
  site: string;
  hub: string;
  /** Served at the operations centre: every site, through the central broker (no video, no clips). */
  centre: boolean;
  video: boolean;
  renotifyMinutes: number;
  thresholds: Thresholds;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

async function request<T>(path: string, init: RequestInit = {}, early?: Promise<Response>): Promise<T> {
  const response = await (early ??
    fetch(path, {
      credentials: 'same-origin',
      ...init,
      headers: init.body ? { 'content-type': 'application/json' } : {},
    }));
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const reason =
      (body as { error?: string } | undefined)?.error ?? `${response.status} ${response.statusText}`;
    throw new ApiError(reason, response.status);
  }
  return body as T;
}

export function login(username: string, password: string): Promise<SessionInfo> {
  return request('/api/login', { method: 'POST', body: JSON.stringify({ username, password }) });
}

/** The development login link printed by `npm start` (#login=…). */
export function loginWithToken(token: string): Promise<SessionInfo> {
  return request('/api/login', { method: 'POST', body: JSON.stringify({ token }) });
}

export function logout(): Promise<unknown> {
  return request('/api/logout', { method: 'POST' });
}

/** Who is logged in; rejects with status 401 when nobody. */
export function currentSession(): Promise<SessionInfo> {
  // The first time, the answer boot.ts asked for when the page started.
  return request('/api/session', {}, takeSessionResponse());
}

/** [hub time ms, CPU %, °C or null] */
export type Sample = [number, number, number | null];

export interface DeviceTelemetryHistory {
  last: unknown;
  lastAt: number | null;
  samples: Sample[];
}

export function telemetryHistory(): Promise<{ devices: Record<string, DeviceTelemetryHistory> }> {
  return request('/api/telemetry');
}
