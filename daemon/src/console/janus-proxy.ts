// The page reaches Janus only through this: a same-origin proxy of Janus's HTTP API
// (https://janus.conf.meetecho.com/docs/rest.html) behind the console login. It forwards the few
// requests a streaming viewer needs and refuses everything else, so a logged-in operator can watch but
// cannot list, create, edit or destroy mountpoints, and nobody without a login reaches Janus at all
// (Janus's HTTP transport listens on loopback or on a network only the hub reaches). Each Janus
// session made through it belongs to the login that made it; log-out destroys it.
//
//   POST /janus                       {janus: create}
//   POST /janus/{session}             {janus: view, mountpoint, min_delay?, max_delay?}   (the hub's own)
//                                     | {janus: attach, plugin: janus.plugin.streaming} | keepalive | destroy
//   POST /janus/{session}/{handle}    {janus: message, body: {request: watch|start|pause|configure|stop}}
//                                     | trickle | detach | hangup
//   GET  /janus/{session}?maxev=N     long poll for events (answered within 30 s)
//
// Janus 1.1.2's streaming plugin makes the offer and the viewer answers (`start` with the answer).
// `view` is that first half composed at the hub, where each step is a loopback round trip instead of
// one through the browser: a streaming handle (attached ahead), `watch`, Janus's offer, and the
// playout delay asked for; it answers with the handle and the offer. The hub long-polls each of its
// Janus sessions itself (it must see the offer to answer `view`) and hands every other event to the
// page's own long poll; a session whose page has stopped polling for a minute is destroyed.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Session } from './sessions.js';
import { readBody } from './request-body.js';

const STREAMING = 'janus.plugin.streaming';
const MAX_BODY = 64 * 1024;
/** Janus holds a long poll up to 30 s; a little more before giving up on it. */
const LONG_POLL_MS = 35_000;
/** The page's long poll is answered within this (with a keepalive when nothing happened), as Janus's. */
const PAGE_POLL_MS = 30_000;
const REQUEST_MS = 5000;
/** A `view` whose offer has not come by then fails (the page tries again). */
const OFFER_MS = 10_000;
/** A session whose page has not polled for this long is gone (Janus's own session timeout: 60 s). */
const ABANDONED_MS = 60_000;
/** Events kept for a page that is not polling right now. */
const MAX_QUEUED = 100;
/** Streaming handles attached ahead in each session, for `view`. */
const SPARE_HANDLES = 4;
const MAX_HANDLES = 32;
/** Janus sessions one login may hold (a tile each; a few tabs of a few cameras): each holds spare handles and a long poll. */
const SESSIONS_PER_LOGIN = 32;
const VIEWER_REQUESTS = new Set(['watch', 'start', 'pause', 'configure', 'stop']);
/** configure: only the receiver-side knobs (playout delay for zero-delay rendering, media on/off). */
const CONFIGURE_KEYS = new Set(['request', 'min_delay', 'max_delay', 'video', 'audio', 'data']);
const WATCH_KEYS = new Set(['request', 'id', 'offer_video', 'offer_audio', 'offer_data']);
const VIEW_KEYS = new Set(['janus', 'transaction', 'mountpoint', 'min_delay', 'max_delay']);

interface JanusEvent {
  janus?: string;
  sender?: number;
  jsep?: { type?: string; sdp?: string };
  data?: { id?: unknown };
  error?: { code?: number; reason?: string };
  plugindata?: { data?: { error?: unknown; error_code?: unknown } };
}

interface Owned {
  session: Session;
  /** Streaming handles given to the page. */
  handles: Set<number>;
  /** Handles attached ahead, not given yet. */
  spare: Array<Promise<number | undefined>>;
  /** Events for the page's long poll. */
  events: JanusEvent[];
  /** Page long polls waiting for events. */
  wake: Set<() => void>;
  /** `view` requests waiting for their handle's offer. */
  offers: Map<number, (event: JanusEvent | undefined) => void>;
  pagePolls: number;
  lastPagePoll: number;
  /** Ends the hub's long poll of the session. */
  stop: AbortController;
  /** Added to the login's onEnd (logged out: destroy the session); removed when the session is forgotten. */
  onEnd: () => void;
  /** Looks for a page that has stopped polling. */
  reaper: NodeJS.Timeout | undefined;
}

export class JanusProxy {
  /** Janus session id → the login that made it, and the streaming handles attached in it. */
  private readonly owned = new Map<number, Owned>();

  private readonly url: string;
  private readonly apiSecret: string | undefined;
  private readonly log: Logger;
  private readonly abandonedMs: number;

  constructor(deps: {
    url: string;
    apiSecret: string | undefined;
    log: Logger;
    /** A session whose page has not polled for this long is destroyed (tests shorten it). */
    abandonedMs?: number;
  }) {
    this.url = deps.url;
    this.apiSecret = deps.apiSecret;
    this.log = deps.log;
    this.abandonedMs = deps.abandonedMs ?? ABANDONED_MS;
  }

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
      const owned = sessionId === undefined ? undefined : this.owned.get(sessionId);
      if (sessionId !== undefined && owned?.session !== session) {
        return this.refuse(response, 403, 'that Janus session is not yours');
      }
      if (request.method === 'GET') {
        if (!owned || sessionId === undefined || handleId !== undefined)
          return this.refuse(response, 405, 'GET is the long poll on a session');
        return await this.pagePoll(request, response, owned, sessionId);
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
      if (sessionId === undefined || !owned) {
        if (verb !== 'create') return this.refuse(response, 403, 'only create at the root');
        if (
          [...this.owned.values()].filter((other) => other.session === session).length >= SESSIONS_PER_LOGIN
        )
          return this.refuse(response, 429, `at most ${SESSIONS_PER_LOGIN} Janus sessions per login`);
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
        const id = (reply as JanusEvent | undefined)?.data?.id;
        if (typeof id === 'number') this.own(id, session);
        return;
      }
      if (handleId === undefined) {
        if (verb === 'view') return await this.view(response, sessionId, owned, body);
        if (verb === 'attach') {
          if (body.plugin !== STREAMING)
            return this.refuse(response, 403, `only ${STREAMING} may be attached`);
          if (owned.handles.size >= MAX_HANDLES)
            return this.refuse(response, 429, `at most ${MAX_HANDLES} handles in a session`);
          const reply = await this.forward(response, 'POST', `/${sessionId}`, body, REQUEST_MS);
          const id = (reply as JanusEvent | undefined)?.data?.id;
          if (typeof id === 'number') owned.handles.add(id);
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
      if (!owned.handles.has(handleId)) return this.refuse(response, 403, 'that handle is not yours');
      if (verb === 'message') {
        const inner = body.body as Record<string, unknown> | undefined;
        const refused = viewerMessageRefused(inner);
        if (refused) return this.refuse(response, 403, refused);
        return void (await this.forward(response, 'POST', `/${sessionId}/${handleId}`, body, REQUEST_MS));
      }
      if (verb === 'trickle' || verb === 'detach' || verb === 'hangup') {
        if (verb === 'detach') owned.handles.delete(handleId);
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

  private own(id: number, session: Session): void {
    const owned: Owned = {
      session,
      handles: new Set(),
      spare: [],
      events: [],
      wake: new Set(),
      offers: new Map(),
      pagePolls: 0,
      lastPagePoll: Date.now(),
      stop: new AbortController(),
      reaper: undefined,
      onEnd: () => this.forget(id, true),
    };
    this.owned.set(id, owned);
    owned.reaper = setInterval(
      () => {
        if (owned.pagePolls > 0 || Date.now() - owned.lastPagePoll <= this.abandonedMs) return;
        this.log.info({ session: id }, 'janus session abandoned by its page: destroyed');
        this.forget(id, true);
      },
      Math.min(10_000, this.abandonedMs / 2),
    );
    owned.reaper.unref();
    session.onEnd.add(owned.onEnd);
    for (let i = 0; i < SPARE_HANDLES; i++) this.attachSpare(id, owned);
    void this.relay(id, owned);
  }

  private attachSpare(id: number, owned: Owned): void {
    const handle = this.janus(`/${id}`, { janus: 'attach', plugin: STREAMING }).then(
      (reply) => (typeof reply.data?.id === 'number' ? reply.data.id : undefined),
      () => undefined,
    );
    owned.spare.push(handle);
  }

  /**
   * `view`: a handle (one attached ahead, or a new one), `watch` the mountpoint, wait for Janus's offer
   * on the hub's long poll, ask for the playout delay; answer {data: {id: handle}, jsep: offer}.
   */
  private async view(
    response: ServerResponse,
    id: number,
    owned: Owned,
    body: Record<string, unknown>,
  ): Promise<void> {
    const extra = Object.keys(body).filter((key) => !VIEW_KEYS.has(key) && key !== 'apisecret');
    if (extra.length > 0) return this.refuse(response, 403, `view: ${extra.join(', ')} not allowed`);
    const { mountpoint, min_delay: minDelay, max_delay: maxDelay } = body;
    if (!isId(mountpoint)) return this.refuse(response, 400, 'view: mountpoint is a mountpoint id');
    if ((minDelay !== undefined && !isId(minDelay)) || (maxDelay !== undefined && !isId(maxDelay)))
      return this.refuse(response, 400, 'view: min_delay and max_delay are whole numbers (10 ms steps)');
    if (owned.handles.size >= MAX_HANDLES)
      return this.refuse(response, 429, `at most ${MAX_HANDLES} handles in a session`);
    const spare = owned.spare.shift();
    if (owned.spare.length < SPARE_HANDLES) this.attachSpare(id, owned);
    let handle = spare ? await spare : undefined;
    if (handle === undefined) {
      const reply = await this.janus(`/${id}`, { janus: 'attach', plugin: STREAMING });
      if (reply.janus === 'error') return this.answer(response, reply);
      handle = typeof reply.data?.id === 'number' ? reply.data.id : undefined;
      if (handle === undefined) return this.refuse(response, 502, 'Janus gave no handle id');
    }
    if (!this.owned.has(id)) return this.refuse(response, 410, 'the Janus session ended');
    owned.handles.add(handle);
    let timer: NodeJS.Timeout | undefined;
    let viewing = false;
    const offered = new Promise<JanusEvent | undefined>((resolve) => {
      owned.offers.set(handle, resolve);
      timer = setTimeout(() => resolve(undefined), OFFER_MS);
    });
    try {
      const watched = await this.janus(`/${id}/${handle}`, {
        janus: 'message',
        body: { request: 'watch', id: mountpoint },
      });
      if (watched.janus === 'error') return this.answer(response, watched);
      // The playout delay, asked beside the wait for the offer (Janus handles a handle's requests in
      // order, after the watch) and before the page's answer: the first packets already carry it.
      const configured =
        minDelay !== undefined || maxDelay !== undefined
          ? this.janus(`/${id}/${handle}`, {
              janus: 'message',
              body: {
                request: 'configure',
                ...(minDelay !== undefined ? { min_delay: minDelay } : {}),
                ...(maxDelay !== undefined ? { max_delay: maxDelay } : {}),
              },
            })
          : undefined;
      const event = await offered;
      await configured;
      if (!event) return this.refuse(response, 504, `Janus made no offer for mountpoint ${mountpoint}`);
      const failed = event.plugindata?.data?.error;
      if (event.janus === 'error' || typeof failed === 'string' || event.jsep?.type !== 'offer') {
        const code = event.error?.code ?? event.plugindata?.data?.error_code;
        return this.answer(response, {
          janus: 'error',
          error: {
            code: typeof code === 'number' ? code : 500,
            reason: typeof failed === 'string' ? failed : (event.error?.reason ?? 'Janus made no offer'),
          },
        });
      }
      viewing = true;
      this.answer(response, {
        janus: 'success',
        session_id: id,
        transaction: body.transaction,
        data: { id: handle },
        jsep: event.jsep,
      });
    } finally {
      clearTimeout(timer);
      owned.offers.delete(handle);
      if (!viewing && owned.handles.delete(handle))
        this.janus(`/${id}/${handle}`, { janus: 'detach' }).catch(() => undefined);
    }
  }

  /** The page's long poll: the events the hub's own long poll received for it. */
  private async pagePoll(
    request: IncomingMessage,
    response: ServerResponse,
    owned: Owned,
    id: number,
  ): Promise<void> {
    const maxev = Math.min(
      10,
      Math.max(1, Number(new URL(request.url ?? '', 'https://x').searchParams.get('maxev') ?? 1) || 1),
    );
    owned.pagePolls += 1;
    try {
      if (owned.events.length === 0 && this.owned.get(id) === owned) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            owned.wake.delete(done);
            response.off('close', done);
            resolve();
          };
          const timer = setTimeout(done, PAGE_POLL_MS);
          owned.wake.add(done);
          response.once('close', done);
        });
      }
    } finally {
      owned.pagePolls -= 1;
      owned.lastPagePoll = Date.now();
    }
    if (response.destroyed) return;
    let events = owned.events.splice(0, maxev);
    if (events.length === 0)
      events =
        this.owned.get(id) === owned
          ? [{ janus: 'keepalive' }]
          : [{ janus: 'error', error: { code: 458, reason: 'No such session' } }];
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify(maxev > 1 ? events : events[0]));
  }

  /** The hub's long poll of a session: offers go to `view`, the rest to the page. */
  private async relay(id: number, owned: Owned): Promise<void> {
    const query = `?maxev=10${this.apiSecret ? `&apisecret=${encodeURIComponent(this.apiSecret)}` : ''}`;
    while (this.owned.get(id) === owned) {
      let events: JanusEvent[];
      try {
        const reply = await fetch(`${this.url}/${id}${query}`, {
          signal: AbortSignal.any([owned.stop.signal, AbortSignal.timeout(LONG_POLL_MS)]),
        });
        const body = (await reply.json()) as JanusEvent | JanusEvent[];
        events = Array.isArray(body) ? body : [body];
      } catch (error) {
        if (owned.stop.signal.aborted) return;
        const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
        events = [{ janus: 'error', error: { code: 458, reason: `lost Janus: ${reason}` } }];
      }
      for (const event of events) {
        if (event.janus === 'keepalive') continue;
        const waiting = event.sender === undefined ? undefined : owned.offers.get(event.sender);
        if (waiting && (event.jsep || event.janus === 'error' || event.plugindata?.data?.error)) {
          waiting(event);
          continue;
        }
        owned.events.push(event);
        if (owned.events.length > MAX_QUEUED) owned.events.shift();
        if (event.janus === 'error') {
          // No such session (Janus restarted) or Janus gone: the page hears it and starts over.
          for (const waiter of owned.offers.values()) waiter(event);
          this.forget(id, false);
        }
      }
      for (const wake of [...owned.wake]) wake();
    }
  }

  private forget(id: number, destroy: boolean): void {
    const owned = this.owned.get(id);
    if (!owned) return;
    this.owned.delete(id);
    owned.session.onEnd.delete(owned.onEnd);
    owned.stop.abort();
    clearInterval(owned.reaper);
    for (const waiter of owned.offers.values()) waiter(undefined);
    for (const wake of [...owned.wake]) wake();
    if (!destroy) return;
    // Logged out (or abandoned): the Janus session goes too (and with it the viewer's PeerConnection).
    this.janus(`/${id}`, { janus: 'destroy' }).catch(() => undefined);
  }

  /** A request of the hub's own to Janus; its JSON reply. */
  private async janus(path: string, body: Record<string, unknown>): Promise<JanusEvent> {
    const reply = await fetch(this.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        ...body,
        transaction: `hub-${++transactions}`,
        ...(this.apiSecret ? { apisecret: this.apiSecret } : {}),
      }),
      signal: AbortSignal.timeout(REQUEST_MS),
    });
    return (await reply.json()) as JanusEvent;
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

  private answer(response: ServerResponse, reply: object): void {
    if (response.headersSent || response.destroyed) return;
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify(reply));
  }

  private refuse(response: ServerResponse, status: number, reason: string): void {
    if (response.headersSent || response.destroyed) return;
    response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify({ janus: 'error', error: { code: status, reason } }));
  }
}

let transactions = 0;

const isId = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Why a streaming `message` is not a viewer's, or undefined when it is. */
function viewerMessageRefused(inner: Record<string, unknown> | undefined): string | undefined {
  const what = typeof inner?.request === 'string' ? inner.request : '';
  if (!VIEWER_REQUESTS.has(what)) return `streaming ${what || '(no request)'} is not a viewer's request`;
  const allowed =
    what === 'configure' ? CONFIGURE_KEYS : what === 'watch' ? WATCH_KEYS : new Set(['request']);
  const extra = Object.keys(inner ?? {}).filter((key) => !allowed.has(key));
  return extra.length > 0 ? `streaming ${what}: ${extra.join(', ')} not allowed` : undefined;
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
