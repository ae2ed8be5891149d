// The page reaches Janus only through this: a same-origin proxy of Janus's HTTP API
// (https://janus.conf.meetecho.com/docs/rest.html) behind the console login. It forwards the few
// requests a streaming viewer needs and refuses everything else, so a logged-in operator can watch but
// cannot list, create, edit or destroy mountpoints, and nobody without a login reaches Janus at all
// (Janus's HTTP transport listens on loopback or on a network only the hub reaches). Each Janus
// session made through it belongs to the login that made it; log-out destroys it.
//
//   POST /janus                       {janus: create}
//   POST /janus/{session}             {janus: attach, plugin: janus.plugin.streaming} | keepalive | destroy
//   POST /janus/{session}/{handle}    {janus: message, body: {request: watch|start|pause|configure|stop}}
//                                     | trickle | detach | hangup
//   GET  /janus/{session}?maxev=N     long poll for events (Janus answers within 30 s)
//
// Janus 1.1.2's streaming plugin makes the offer and the viewer answers (`start` with the answer).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Session } from './sessions.js';
import { readBody } from './request-body.js';

const STREAMING = 'janus.plugin.streaming';
const MAX_BODY = 64 * 1024;
/** Janus holds a long poll up to 30 s; a little more before giving up on it. */
const LONG_POLL_MS = 35_000;
const REQUEST_MS = 5000;
const VIEWER_REQUESTS = new Set(['watch', 'start', 'pause', 'configure', 'stop']);
/** configure: only the receiver-side knobs (playout delay for zero-delay rendering, media on/off). */
const CONFIGURE_KEYS = new Set(['request', 'min_delay', 'max_delay', 'video', 'audio', 'data']);
const WATCH_KEYS = new Set(['request', 'id', 'offer_video', 'offer_audio', 'offer_data']);

interface Owned {
  session: Session;
  handles: Set<number>;
}

export class JanusProxy {
  /** Janus session id → the login that made it, and the streaming handles attached in it. */
  private readonly owned = new Map<number, Owned>();

  constructor(
    private readonly url: string,
    private readonly apiSecret: string | undefined,
    private readonly log: Logger,
  ) {}

  /** `path` is what follows /janus; answers every request (never throws). */
  async handle(
    request: IncomingMessage,
    response: ServerResponse,
    session: Session,
    path: string,
  ): Promise<void> {
    try {
      const parts = path.split('/').filter((part) => part !== '');
      if (parts.length > 2 || parts.some((part) => !/^\d{1,20}$/.test(part))) {
        return this.refuse(response, 404, 'no such Janus path');
      }
      const [sessionId, handleId] = parts.map(Number);
      if (sessionId !== undefined && this.owned.get(sessionId)?.session !== session) {
        return this.refuse(response, 403, 'that Janus session is not yours');
      }
      if (request.method === 'GET') {
        if (sessionId === undefined || handleId !== undefined)
          return this.refuse(response, 405, 'GET is the long poll on a session');
        const maxev = Math.min(
          10,
          Math.max(1, Number(new URL(request.url ?? '', 'https://x').searchParams.get('maxev') ?? 1) || 1),
        );
        await this.forward(response, 'GET', `/${sessionId}?maxev=${maxev}`, undefined, LONG_POLL_MS, request);
        return;
      }
      if (request.method !== 'POST') return this.refuse(response, 405, 'POST or GET');
      const body = await readJson(request);
      if (!body) return this.refuse(response, 400, 'a Janus request is a JSON object under 64 KiB');
      const verb = body.janus;
      // What the page may not set: the server's own credentials go in here, not from the page.
      delete body.apisecret;
      delete body.token;
      delete body.admin_secret;
      if (this.apiSecret) body.apisecret = this.apiSecret;
      if (sessionId === undefined) {
        if (verb !== 'create') return this.refuse(response, 403, 'only create at the root');
        const reply = await this.forward(
          response,
          'POST',
          '',
          {
            janus: 'create',
            transaction: body.transaction,
            ...(this.apiSecret ? { apisecret: this.apiSecret } : {}),
          },
          REQUEST_MS,
        );
        const id = (reply as { data?: { id?: unknown } } | undefined)?.data?.id;
        if (typeof id === 'number') {
          const owned: Owned = { session, handles: new Set() };
          this.owned.set(id, owned);
          session.onEnd.add(() => this.forget(id, true));
        }
        return;
      }
      if (handleId === undefined) {
        if (verb === 'attach') {
          if (body.plugin !== STREAMING)
            return this.refuse(response, 403, `only ${STREAMING} may be attached`);
          const reply = await this.forward(response, 'POST', `/${sessionId}`, body, REQUEST_MS);
          const id = (reply as { data?: { id?: unknown } } | undefined)?.data?.id;
          if (typeof id === 'number') this.owned.get(sessionId)?.handles.add(id);
          return;
        }
        if (verb === 'keepalive')
          return void (await this.forward(response, 'POST', `/${sessionId}`, body, REQUEST_MS));
        if (verb === 'destroy') {
          await this.forward(response, 'POST', `/${sessionId}`, body, REQUEST_MS);
          this.forget(sessionId, false);
          return;
        }
        return this.refuse(response, 403, `janus ${String(verb)} is not a viewer's request`);
      }
      if (!this.owned.get(sessionId)?.handles.has(handleId))
        return this.refuse(response, 403, 'that handle is not yours');
      if (verb === 'message') {
        const inner = body.body as Record<string, unknown> | undefined;
        const what = typeof inner?.request === 'string' ? inner.request : '';
        if (!VIEWER_REQUESTS.has(what))
          return this.refuse(response, 403, `streaming ${what || '(no request)'} is not a viewer's request`);
        const allowed =
          what === 'configure' ? CONFIGURE_KEYS : what === 'watch' ? WATCH_KEYS : new Set(['request']);
        const extra = Object.keys(inner ?? {}).filter((key) => !allowed.has(key));
        if (extra.length > 0)
          return this.refuse(response, 403, `streaming ${what}: ${extra.join(', ')} not allowed`);
        return void (await this.forward(response, 'POST', `/${sessionId}/${handleId}`, body, REQUEST_MS));
      }
      if (verb === 'trickle' || verb === 'detach' || verb === 'hangup') {
        if (verb === 'detach') this.owned.get(sessionId)?.handles.delete(handleId);
        return void (await this.forward(response, 'POST', `/${sessionId}/${handleId}`, body, REQUEST_MS));
      }
      return this.refuse(response, 403, `janus ${String(verb)} is not a viewer's request`);
    } catch (error) {
      this.log.warn({ err: error }, 'janus proxy request failed');
      if (!response.headersSent) this.refuse(response, 502, 'Janus did not answer');
      else response.destroy();
    }
  }

  /** Janus sessions through the proxy now (for tests and the log). */
  get sessions(): number {
    return this.owned.size;
  }

  private forget(id: number, destroy: boolean): void {
    if (!this.owned.delete(id) || !destroy) return;
    // Logged out: the Janus session goes too (and with it the viewer's PeerConnection).
    fetch(`${this.url}/${id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        janus: 'destroy',
        transaction: 'logout',
        ...(this.apiSecret ? { apisecret: this.apiSecret } : {}),
      }),
      signal: AbortSignal.timeout(REQUEST_MS),
    }).catch(() => undefined);
  }

  /** Forward to Janus and relay its JSON; resolves with the parsed reply (undefined on failure). */
  private async forward(
    response: ServerResponse,
    method: 'GET' | 'POST',
    path: string,
    body: Record<string, unknown> | undefined,
    timeoutMs: number,
    request?: IncomingMessage,
  ): Promise<unknown> {
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    request?.once('close', onClose);
    response.once('close', onClose);
    try {
      const reply = await fetch(this.url + path, {
        method,
        ...(body ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
        signal: AbortSignal.any([abort.signal, AbortSignal.timeout(timeoutMs)]),
      });
      const text = await reply.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (!response.headersSent && !response.destroyed) {
        response.writeHead(reply.status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        response.end(text);
      }
      return parsed;
    } catch (error) {
      if (abort.signal.aborted) return undefined;
      const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      if (!response.headersSent && !response.destroyed)
        this.refuse(response, 502, `Janus unreachable: ${reason}`);
      return undefined;
    } finally {
      request?.off('close', onClose);
      response.off('close', onClose);
    }
  }

  private refuse(response: ServerResponse, status: number, reason: string): void {
    response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify({ janus: 'error', error: { code: status, reason } }));
  }
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const text = await readBody(request, MAX_BODY);
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
