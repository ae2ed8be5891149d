// The site console's serving side: one HTTPS server (the hub's certificate from provisioning, or a
// development certificate on loopback) that serves the built page (dist/console), the login, the MQTT
// connection of a logged-in page (WebSocket at /mqtt, handed to the broker with the login's identity),
// the Janus viewer proxy (/janus, janus-proxy.ts) and the telemetry history (/api/telemetry).
//
// A login checks the same identities with the same limits as an MQTT CONNECT (Broker.checkLogin) and
// sets a session cookie (HttpOnly, Secure, SameSite=Strict); the page never holds a password. Without
// a session, only the page's static files and POST /api/login answer: no video, no clip, no topic.
// Every response carries a strict Content-Security-Policy: scripts, styles, media and connections from
// this origin only, no inline script.
//
// The same server runs at the operations centre (`outpost centre console`, centre-console.ts) with the
// central broker behind ConsoleBroker (central-broker.ts): no Janus, no clip archive, no history.
import { createHash, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { extname, join, normalize, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import type { ConsoleConfig } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import { listen } from '../lifecycle/listen.js';
import type { Service } from '../lifecycle/service.js';
import type { Identity } from '../mqtt/identities.js';
import { DEFAULT_THRESHOLDS } from '../telemetry/thresholds.js';
import { devCertificate } from './dev-cert.js';
import { JanusProxy } from './janus-proxy.js';
import { readBody } from './request-body.js';
import { Sessions, type Session } from './sessions.js';
import type { TelemetryHistory } from './telemetry-history.js';
import type { ClipArchive } from './clip-archive.js';
import { createReadStream } from 'node:fs';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  // MQTT.js runs its keep-alive timers in a worker made from its own code (a blob), so that a tab in
  // the background still pings the broker on time (browsers throttle timers in background tabs).
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
} as const;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
};

/** MQTT-over-WebSocket connections one login may hold (a page uses one; a few tabs, a few more). */
const SOCKETS_PER_SESSION = 8;

/** What the console needs from the broker (mqtt/broker.ts implements it). */
export interface ConsoleBroker {
  checkLogin(
    remote: string,
    username: string,
    password: string,
    loopback: boolean,
  ): Promise<Identity | 'unavailable' | undefined>;
  acceptSession(stream: Duplex, tls: TLSSocket | undefined, remote: string, identity: Identity): void;
  hasIdentity(identity: Identity): boolean;
}

export interface ConsoleServerOptions {
  /**
   * `site`: a hub's console (one site). `centre`: the operations centre's (`outpost centre console`),
   * whose broker is the central one every site bridges to: the page offers every site.
   */
  scope?: 'site' | 'centre';
  /** The site's name; at the centre, the centre's (shown in the page). */
  site: string;
  /** The hub's device name (shown in the page). */
  device: string;
  dataDir: string;
  console: ConsoleConfig;
  /** broker.tls when console.tls is absent. */
  tls: { cert: string; key: string } | undefined;
  janus: { url: string; apiSecret: string | undefined } | undefined;
  broker: ConsoleBroker;
  /** The hub's telemetry history (absent at the centre: charts start when the page opens). */
  telemetry: TelemetryHistory | undefined;
  /** The hub's clip archive (absent: no clips in the console). */
  clips: ClipArchive | undefined;
  maxPacketBytes: number;
  log: Logger;
  /** Built page; default dist/console beside the compiled daemon. */
  staticDir?: string;
}

export class ConsoleServer implements Service {
  readonly name = 'console';
  private server: Server | undefined;
  private readonly sessions: Sessions;
  private readonly janus: JanusProxy | undefined;
  private readonly websockets = new WebSocketServer({ noServer: true });
  private readonly devToken = randomBytes(24).toString('base64url');
  private readonly staticDir: string;
  /** Each login's MQTT WebSockets (bounded by SOCKETS_PER_SESSION). */
  private readonly socketsOf = new WeakMap<Session, Set<WebSocket>>();
  /** base64 SHA-256 of the certificate's public key (tests trust exactly that certificate). */
  spki = '';
  /** The development CA file, when the console made its own certificate. */
  devCaFile: string | undefined;

  constructor(private readonly options: ConsoleServerOptions) {
    this.sessions = new Sessions({
      idleMs: options.console.sessionIdleMinutes * 60_000,
      // At the centre a login lives with its password, in memory only: nothing to keep on disk.
      file: options.scope === 'centre' ? undefined : join(options.dataDir, 'console', 'sessions.json'),
      log: options.log,
    });
    this.janus = options.janus
      ? new JanusProxy({ ...options.janus, log: options.log.child({ part: 'janus-proxy' }) })
      : undefined;
    this.staticDir = options.staticDir ?? defaultStaticDir();
    this.websockets.on('error', (error) => options.log.warn({ err: error }, 'console websocket error'));
  }

  /** https://HOST:PORT/ once listening. */
  url(): string | undefined {
    const address = this.server?.address();
    if (!address || typeof address !== 'object') return undefined;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `https://${host === '0.0.0.0' || host === '[::]' ? 'HUB-ADDRESS' : host}:${address.port}/`;
  }

  /** The development login link (console.devLogin): logs in as local-admin from loopback, this run only. */
  loginUrl(): string | undefined {
    const url = this.url();
    return url && this.options.console.devLogin ? `${url}#login=${this.devToken}` : undefined;
  }

  async start(): Promise<void> {
    const { console: settings, log } = this.options;
    await this.sessions.load((identity) => this.options.broker.hasIdentity(identity));
    let cert: Buffer;
    let key: Buffer;
    const files = settings.tls ?? this.options.tls;
    if (files) {
      try {
        [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
      } catch (error) {
        throw new OutpostError(
          'TLS_MATERIAL_INVALID',
          `console: ${files.cert} or ${files.key} cannot be read`,
          {
            hint: 'provision the hub (outpost-provision bundle), or fix console.tls / broker.tls',
            cause: error,
          },
        );
      }
    } else if (['127.0.0.1', '::1'].includes(settings.host)) {
      const dev = await devCertificate(this.options.dataDir, this.options.site);
      [cert, key] = [dev.cert, dev.key];
      this.devCaFile = dev.caFile;
    } else {
      throw new OutpostError('TLS_MATERIAL_INVALID', `console on ${settings.host} needs a certificate`, {
        hint: 'give broker.tls or console.tls (the hub certificate from provisioning); only a loopback console makes its own',
      });
    }
    this.spki = spkiOf(cert);
    const server = createServer({ cert, key, minVersion: 'TLSv1.2' }, (request, response) => {
      this.route(request, response).catch((error: unknown) => {
        log.error({ err: error, url: request.url }, 'console request failed');
        if (!response.headersSent) this.json(response, 500, { error: 'internal error; see the hub log' });
        else response.destroy();
      });
    });
    server.on('upgrade', (request, socket, head) => this.upgrade(request, socket, head));
    server.on('tlsClientError', (error) => log.debug({ err: error }, 'console tls handshake failed'));
    server.on('error', (error) => log.error({ err: error }, 'console server error'));
    await listen(server, settings, 'console', 'the console');
    this.server = server;
    if (!existsSync(join(this.staticDir, 'index.html'))) {
      log.warn({ dir: this.staticDir }, 'console page not built: run `npm run build`');
    }
    log.info({ url: this.url(), static: this.staticDir }, 'console listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await this.sessions.close();
    for (const client of this.websockets.clients) client.terminate();
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  healthy(): boolean {
    return this.server?.listening === true;
  }

  /** After the identities were reloaded: logins of accounts revoked or changed since end now. */
  endRevokedLogins(): void {
    this.sessions.endWhere((identity) => this.options.broker.hasIdentity(identity));
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'https://console.invalid');
    const path = url.pathname;
    if (path === '/api/login') return this.login(request, response);
    if (path.startsWith('/api/') || path === '/janus' || path.startsWith('/janus/')) {
      const session = this.sessions.fromCookie(request.headers.cookie);
      if (!session) return this.json(response, 401, { error: 'log in first' });
      if (request.method === 'POST' && !this.sameOrigin(request))
        return this.json(response, 403, { error: 'cross-origin request refused' });
      if (path === '/api/logout') {
        this.sessions.end(session.id);
        response.setHeader('set-cookie', Sessions.clearedCookie());
        return this.json(response, 200, { ok: true });
      }
      if (path === '/api/session') return this.json(response, 200, this.describe(session));
      const operator = session.identity.role === 'console' || session.identity.role === 'admin';
      if (path === '/api/telemetry') {
        if (!operator) return this.json(response, 403, { error: 'box health is for console operators' });
        return this.json(response, 200, { devices: this.options.telemetry?.snapshot() ?? {} });
      }
      if (path === '/api/clips' || path.startsWith('/api/clips/')) {
        if (!operator) return this.json(response, 403, { error: 'clips are for console operators' });
        const archive = this.options.clips;
        if (!archive) return this.json(response, 503, { error: 'no clip archive on this hub' });
        if (path === '/api/clips') return this.json(response, 200, { clips: await archive.list() });
        const match = /^\/api\/clips\/([^/]+)\/([^/]+)\.mp4$/.exec(path);
        const file = match ? archive.file(match[1] ?? '', match[2] ?? '') : undefined;
        const info = file ? await stat(file).catch(() => undefined) : undefined;
        if (!file || !info?.isFile())
          return this.json(response, 404, {
            error: 'no such clip (still arriving, or removed by the quota)',
          });
        response.writeHead(200, {
          ...SECURITY_HEADERS,
          'content-type': 'video/mp4',
          'content-length': info.size,
          'cache-control': 'private, no-cache',
          'content-disposition': `attachment; filename="${match?.[1] ?? 'clip'}-${match?.[2] ?? 'clip'}.mp4"`,
        });
        createReadStream(file)
          .on('error', () => response.destroy())
          .pipe(response);
        return;
      }
      if (path === '/janus' || path.startsWith('/janus/')) {
        if (!operator) return this.json(response, 403, { error: 'live video is for console operators' });
        if (!this.janus)
          return this.json(response, 503, { error: 'no Janus on this site (sfu.mode is not janus)' });
        for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.setHeader(name, value);
        return this.janus.handle(request, response, session, path.slice('/janus'.length));
      }
      return this.json(response, 404, { error: 'no such API' });
    }
    if (request.method !== 'GET' && request.method !== 'HEAD')
      return this.json(response, 405, { error: 'GET only' });
    return this.serveStatic(path, response);
  }

  private describe(session: Session): object {
    return {
      username: session.identity.name,
      role: session.identity.role,
      site: this.options.site,
      hub: this.options.device,
      centre: this.options.scope === 'centre',
      video: this.janus !== undefined,
      renotifyMinutes: this.options.console.alerts.renotifyMinutes,
      thresholds: DEFAULT_THRESHOLDS,
    };
  }

  private async login(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'POST')
      return this.json(response, 405, { error: 'POST your user name and password' });
    if (!this.sameOrigin(request)) return this.json(response, 403, { error: 'cross-origin login refused' });
    const body = await readBody(request, 4096);
    let form: { username?: unknown; password?: unknown; token?: unknown };
    try {
      form = JSON.parse(body ?? '') as typeof form;
    } catch {
      return this.json(response, 400, { error: 'send {"username": …, "password": …} as JSON' });
    }
    const remote = request.socket.remoteAddress ?? 'unknown';
    const loopback = isLoopback(remote);
    let identity: Identity | 'unavailable' | undefined;
    if (typeof form.token === 'string') {
      if (!this.options.console.devLogin || !loopback || !sameSecret(form.token, this.devToken)) {
        return this.json(response, 401, {
          error: 'this login link is not valid (any more): log in with your user name and password',
        });
      }
      identity = { name: 'local-admin', role: 'admin' };
    } else {
      if (
        typeof form.username !== 'string' ||
        typeof form.password !== 'string' ||
        form.username === '' ||
        form.password === ''
      ) {
        return this.json(response, 400, { error: 'give a user name and a password' });
      }
      identity = await this.options.broker.checkLogin(remote, form.username, form.password, loopback);
    }
    if (identity === 'unavailable') {
      response.setHeader('retry-after', '10');
      return this.json(response, 429, {
        error:
          this.options.scope === 'centre'
            ? 'too many failed logins from this address, or the central broker cannot be asked now: wait a few seconds and try again'
            : 'too many failed logins from this address, or the hub is busy: wait a few seconds and try again',
      });
    }
    if (!identity) {
      this.options.log.warn({ username: form.username, remote }, 'console login refused');
      return this.json(response, 401, { error: 'wrong user name or password' });
    }
    if (identity.role === 'device')
      return this.json(response, 403, {
        error: `${identity.name} is a ${this.options.scope === 'centre' ? "site bridge's" : "box's"} account, not a person's: log in as a console or staff account`,
      });
    const { session, token } = this.sessions.create(identity);
    this.options.log.info({ identity: identity.name, role: identity.role, remote }, 'console login');
    response.setHeader('set-cookie', this.sessions.cookie(token));
    return this.json(response, 200, this.describe(session));
  }

  private upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, reason: string): void => {
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    };
    socket.on('error', () => socket.destroy());
    const path = new URL(request.url ?? '/', 'https://console.invalid').pathname;
    if (path !== '/mqtt') return refuse(404, 'Not Found');
    if (!this.sameOrigin(request)) return refuse(403, 'Forbidden');
    const session = this.sessions.fromCookie(request.headers.cookie);
    if (!session) return refuse(401, 'Unauthorized');
    const sockets = this.socketsOf.get(session) ?? new Set<WebSocket>();
    if (sockets.size >= SOCKETS_PER_SESSION) return refuse(429, 'Too Many Requests');
    this.websockets.handleUpgrade(request, socket, head, (ws) => {
      const stream = createWebSocketStream(ws);
      // The broker writes each MQTT packet in parts (header, topic, payload) to a corked stream: send
      // what one uncork releases as one WebSocket message, not one message (and TLS record) per part,
      // so that the page's browser wakes once per packet, not three or four times.
      stream._writev = (chunks, callback) =>
        stream._write(
          Buffer.concat(chunks.map(({ chunk }) => chunk as Buffer)),
          'buffer' as BufferEncoding,
          callback,
        );
      stream.on('error', () => stream.destroy());
      sockets.add(ws);
      this.socketsOf.set(session, sockets);
      // Logging out (or the session expiring) closes the page's MQTT connection too.
      const end = (): void => ws.terminate();
      session.onEnd.add(end);
      ws.once('close', () => {
        sockets.delete(ws);
        session.onEnd.delete(end);
      });
      this.options.broker.acceptSession(
        stream,
        request.socket as TLSSocket,
        request.socket.remoteAddress ?? 'unknown',
        session.identity,
      );
    });
  }

  private sameOrigin(request: IncomingMessage): boolean {
    const origin = request.headers.origin;
    // Browsers send Origin on every POST and WebSocket; a tool without one (curl) is not a CSRF vector.
    return origin === undefined || origin === `https://${request.headers.host ?? ''}`;
  }

  private async serveStatic(path: string, response: ServerResponse): Promise<void> {
    const root = this.staticDir;
    let file = normalize(join(root, decodeURIComponent(path)));
    if (!file.startsWith(root.endsWith(sep) ? root : root + sep) && file !== root)
      return this.json(response, 404, { error: 'not found' });
    let info = await stat(file).catch(() => undefined);
    // The page routes itself (/live, /alerts…): every other path is the page.
    if (!info?.isFile()) {
      if (path.startsWith('/assets/')) return this.json(response, 404, { error: 'not found' });
      file = join(root, 'index.html');
      info = await stat(file).catch(() => undefined);
      if (!info) {
        response.writeHead(503, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
        response.end('The console page is not built: run `npm run build` in the Outpost repository.\n');
        return;
      }
    }
    const body = await readFile(file);
    const hashed = file.includes(`${sep}assets${sep}`);
    response.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': body.length,
      // Vite names assets by content hash: they never change; the page itself is always revalidated.
      'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    response.end(body);
  }

  private json(response: ServerResponse, status: number, body: object): void {
    const text = JSON.stringify(body);
    response.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(text),
    });
    response.end(text);
  }
}

/** dist/console beside the compiled daemon (dist/daemon/src/console), or from the sources (tests). */
function defaultStaticDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  return here.includes(`${sep}dist${sep}`)
    ? join(here, '..', '..', '..', 'console')
    : join(here, '..', '..', '..', 'dist', 'console');
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function spkiOf(certPem: Buffer): string {
  // The first certificate of a chain is the server's own.
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(
    certPem.toString('utf8'),
  )?.[0];
  const publicKey = new X509Certificate(first ?? certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(publicKey).digest('base64');
}
