// A small typed client for Janus's streaming plugin over its HTTP API, through the hub's same-origin
// proxy (/janus, behind the login): one Janus session per page, one handle per playing tile. Janus
// 1.1.2 makes the offer; the page answers (`start` with the answer). The first half is one request to
// the hub (`view`: a handle, `watch`, Janus's offer and the playout delay, composed at the hub, see
// daemon/src/console/janus-proxy.ts), so a tile is two requests from its start to its media. Each
// viewer asks for zero playout delay as bench:latency's viewer does: playoutDelayHint and
// jitterBufferTarget 0 on the receiver, and Janus's playout-delay RTP extension with min = max = 0.

import type { TileStep } from './marks.js';

interface JanusReply {
  janus: string;
  data?: { id?: number };
  error?: { code: number; reason: string };
  plugindata?: { data?: Record<string, unknown> };
}

interface JanusEvent extends JanusReply {
  sender?: number;
  jsep?: RTCSessionDescriptionInit;
  candidate?: RTCIceCandidateInit & { completed?: boolean };
}

export class JanusError extends Error {
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
  }
}

let transactions = 0;

async function call(path: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<JanusReply> {
  const response = await fetch(`/janus${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, transaction: `t${++transactions}` }),
    credentials: 'same-origin',
    ...(signal ? { signal } : {}),
  });
  const reply = (await response.json()) as JanusReply;
  if (reply.janus === 'error') throw new JanusError(reply.error?.reason ?? 'Janus error', reply.error?.code);
  return reply;
}

/**
 * The answer with the browser as the DTLS server (`a=setup:passive`), so that Janus is the client.
 * Janus takes no DTLS packet before its own ICE agent has selected a pair, and the browser, whose ICE
 * is done first, would send its ClientHello into that gap and wait 50, 100, 200 ms… to resend it
 * (the DTLS stage was 100 / 190 ms p50 / p95 on loopback). As the server, the browser keeps a
 * ClientHello that arrives early, and Janus sends its own the moment its pair is selected.
 */
export function asDtlsServer(answer: RTCSessionDescriptionInit): RTCSessionDescriptionInit {
  return { type: answer.type, sdp: answer.sdp?.replace(/^a=setup:active(?=\r?$)/gm, 'a=setup:passive') };
}

/** One Janus session: long-polls its events and hands each to the handle it is for. */
export class JanusSession {
  private readonly handlers = new Map<number, (event: JanusEvent) => void>();
  private closed = false;
  private readonly abort = new AbortController();

  private constructor(
    readonly id: number,
    private readonly onLost: (reason: string) => void,
  ) {}

  static async create(onLost: (reason: string) => void): Promise<JanusSession> {
    const reply = await call('', { janus: 'create' });
    const id = reply.data?.id;
    if (typeof id !== 'number') throw new JanusError('Janus gave no session id', undefined);
    const session = new JanusSession(id, onLost);
    void session.poll();
    return session;
  }

  get alive(): boolean {
    return !this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    void call(`/${this.id}`, { janus: 'destroy' }).catch(() => undefined);
  }

  /**
   * A streaming handle watching `mountpoint` and Janus's offer for it, in one request (the hub's
   * `view`), with zero playout delay asked for; `onEvent` gets the handle's later events.
   */
  async view(
    mountpoint: number,
    onEvent: (event: JanusEvent) => void,
  ): Promise<{ handle: number; offer: RTCSessionDescriptionInit }> {
    const reply = (await call(`/${this.id}`, {
      janus: 'view',
      mountpoint,
      min_delay: 0,
      max_delay: 0,
    })) as JanusEvent;
    const handle = reply.data?.id;
    if (typeof handle !== 'number' || reply.jsep?.type !== 'offer')
      throw new JanusError('the hub gave no handle or offer', undefined);
    this.handlers.set(handle, onEvent);
    return { handle, offer: reply.jsep };
  }

  async message(
    handle: number,
    body: Record<string, unknown>,
    jsep?: Record<string, unknown>,
  ): Promise<JanusReply> {
    return call(`/${this.id}/${handle}`, { janus: 'message', body, ...(jsep ? { jsep } : {}) });
  }

  /** Local candidates, several in one request; `{completed: true}` last when gathering is done. */
  async trickle(handle: number, candidates: Array<RTCIceCandidateInit | { completed: true }>): Promise<void> {
    await call(`/${this.id}/${handle}`, { janus: 'trickle', candidates });
  }

  async detach(handle: number): Promise<void> {
    this.handlers.delete(handle);
    if (!this.closed) await call(`/${this.id}/${handle}`, { janus: 'detach' }).catch(() => undefined);
  }

  /** Janus's HTTP transport: a GET per batch of events, which also keeps the session alive. */
  private async poll(): Promise<void> {
    while (!this.closed) {
      let events: JanusEvent[];
      try {
        const response = await fetch(`/janus/${this.id}?maxev=10&rid=${Date.now()}`, {
          credentials: 'same-origin',
          signal: this.abort.signal,
        });
        const body = (await response.json()) as JanusEvent | JanusEvent[];
        events = Array.isArray(body) ? body : [body];
      } catch (error) {
        if (this.closed) return;
        this.lose(`lost Janus: ${(error as Error).message}`);
        return;
      }
      for (const event of events) {
        if (event.janus === 'error') {
          // 458: no such session (Janus restarted); 403 from the proxy: logged out.
          this.lose(`Janus: ${event.error?.reason ?? 'error'}`);
          return;
        }
        if (event.sender !== undefined) this.handlers.get(event.sender)?.(event);
      }
    }
  }

  private lose(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.onLost(reason);
  }
}

/** Plays one mountpoint into `video`; `close()` hangs up. Rejects when Janus refuses the watch. */
export class MountpointViewer {
  private pc: RTCPeerConnection | undefined;
  private handle: number | undefined;
  private closed = false;

  constructor(
    private readonly deps: {
      session: JanusSession;
      mountpoint: number;
      video: HTMLVideoElement;
      onFailed: (reason: string) => void;
      /** Each step of the connection as it happens (marks.ts). */
      onStep?: (step: TileStep) => void;
    },
  ) {}

  async open(): Promise<void> {
    // A candidate pool: the browser gathers while the hub makes the offer, and the answer carries them.
    const pc = new RTCPeerConnection({ iceServers: [], iceCandidatePoolSize: 1 });
    this.pc = pc;
    pc.ontrack = (event) => {
      const receiver = event.receiver as RTCRtpReceiver & {
        playoutDelayHint?: number;
        jitterBufferTarget?: number;
      };
      if ('playoutDelayHint' in receiver) receiver.playoutDelayHint = 0;
      if ('jitterBufferTarget' in receiver) receiver.jitterBufferTarget = 0;
      // A remote track starts muted and unmutes at its first RTP packet.
      event.track.addEventListener('unmute', () => this.deps.onStep?.('rtp'), { once: true });
      this.deps.video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      void this.deps.video.play().catch(() => undefined);
    };
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'connected') this.deps.onStep?.('ice');
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') this.deps.onStep?.('dtls');
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed')
        this.fail(`media ${pc.connectionState}`);
    };
    const { handle, offer } = await this.deps.session.view(
      this.deps.mountpoint,
      (event) => void this.onEvent(event),
    );
    this.handle = handle;
    if (this.closed) {
      void this.deps.session.detach(handle);
      return;
    }
    this.deps.onStep?.('offer');
    await this.answer(pc, handle, offer);
  }

  /** The video receiver's statistics (inbound-rtp), for the tests and bench:console. */
  async videoStats(): Promise<Record<string, unknown> | undefined> {
    const report = await this.pc?.getStats();
    let found: Record<string, unknown> | undefined;
    report?.forEach((entry: Record<string, unknown>) => {
      if (entry.type === 'inbound-rtp' && entry.kind === 'video') found = entry;
    });
    return found;
  }

  /** This side's DTLS role ('server' when Janus is the DTLS client), from the transport's statistics. */
  async dtlsRole(): Promise<string | undefined> {
    const report = await this.pc?.getStats();
    let role: string | undefined;
    report?.forEach((entry: Record<string, unknown>) => {
      if (entry.type === 'transport' && typeof entry.dtlsRole === 'string') role = entry.dtlsRole;
    });
    return role;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pc?.close();
    this.deps.video.srcObject = null;
    if (this.handle !== undefined) void this.deps.session.detach(this.handle);
  }

  private fail(reason: string): void {
    if (this.closed) return;
    this.close();
    this.deps.onFailed(reason);
  }

  /** Answer Janus's offer (the browser as DTLS server) and `start`; local candidates follow in batches. */
  private async answer(
    pc: RTCPeerConnection,
    handle: number,
    offer: RTCSessionDescriptionInit,
  ): Promise<void> {
    // Trickle ICE: the answer goes at once with the candidates gathered so far (the pool's), and any
    // later one follows, several to a request, instead of one request each.
    let sentSdp = '';
    let batch: Array<RTCIceCandidateInit | { completed: true }> = [];
    const flush = () => {
      const candidates = batch.filter((c) => !('candidate' in c) || !sentSdp.includes(c.candidate ?? ''));
      batch = [];
      if (candidates.length > 0 && !this.closed)
        void this.deps.session.trickle(handle, candidates).catch(() => undefined);
    };
    let started = false;
    pc.onicecandidate = ({ candidate }) => {
      if (this.closed) return;
      if (batch.length === 0 && started) setTimeout(flush, 0);
      batch.push(candidate ? candidate.toJSON() : { completed: true });
    };
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(asDtlsServer(await pc.createAnswer()));
    const answer = pc.localDescription;
    if (!answer || this.closed) return;
    this.deps.onStep?.('answered');
    sentSdp = answer.sdp;
    const complete = pc.iceGatheringState === 'complete';
    const start = this.deps.session.message(
      handle,
      { request: 'start' },
      { type: answer.type, sdp: answer.sdp, trickle: !complete },
    );
    started = true;
    if (complete) pc.onicecandidate = null;
    else flush();
    await start;
    this.deps.onStep?.('started');
  }

  private async onEvent(event: JanusEvent): Promise<void> {
    const pc = this.pc;
    const handle = this.handle;
    if (!pc || handle === undefined || this.closed) return;
    try {
      const result = event.plugindata?.data;
      if (result && typeof result.error === 'string') {
        this.fail(`Janus: ${result.error}`);
        return;
      }
      if (event.janus === 'hangup' || event.janus === 'detached') {
        this.fail('Janus hung up');
        return;
      }
      if (event.janus === 'trickle' && event.candidate && !event.candidate.completed) {
        await pc.addIceCandidate(event.candidate);
        return;
      }
      if (event.jsep?.type === 'offer') await this.answer(pc, handle, event.jsep);
    } catch (error) {
      this.fail((error as Error).message);
    }
  }
}
