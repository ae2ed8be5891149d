// A small typed client for Janus's streaming plugin over its HTTP API, through the hub's same-origin
// proxy (/janus, behind the login): one Janus session per page, one handle per playing tile. Janus
// 1.1.2 makes the offer; the page answers (`start` with the answer). Each viewer asks for zero
// playout delay as bench:latency's viewer does: playoutDelayHint and jitterBufferTarget 0 on the
// receiver, and Janus's playout-delay RTP extension with min = max = 0.

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

/** One Janus session: long-polls its events and hands each to the handle it is for. */
export class JanusSession {
  private readonly handlers = new Map<number, (event: JanusEvent) => void>();
  /** Handles attached ahead (prepare), not yet given to a viewer. */
  private readonly spare: Array<Promise<number>> = [];
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
   * Attach `count` streaming handles ahead, while the page still waits for the camera states: a tile
   * then starts with its `watch` (a handle is not tied to a mountpoint until then).
   */
  prepare(count: number): void {
    for (let i = 0; i < count; i++) {
      const handle = this.attachHandle();
      handle.catch(() => undefined);
      this.spare.push(handle);
    }
  }

  async attach(onEvent: (event: JanusEvent) => void): Promise<number> {
    const spare = this.spare.shift();
    const handle = spare ? await spare.catch(() => this.attachHandle()) : await this.attachHandle();
    this.handlers.set(handle, onEvent);
    return handle;
  }

  private async attachHandle(): Promise<number> {
    const reply = await call(`/${this.id}`, { janus: 'attach', plugin: 'janus.plugin.streaming' });
    const handle = reply.data?.id;
    if (typeof handle !== 'number') throw new JanusError('Janus gave no handle id', undefined);
    return handle;
  }

  async message(
    handle: number,
    body: Record<string, unknown>,
    jsep?: Record<string, unknown>,
  ): Promise<JanusReply> {
    return call(`/${this.id}/${handle}`, { janus: 'message', body, ...(jsep ? { jsep } : {}) });
  }

  async trickle(handle: number, candidate: RTCIceCandidateInit | { completed: true }): Promise<void> {
    await call(`/${this.id}/${handle}`, { janus: 'trickle', candidate });
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
    const pc = new RTCPeerConnection({ iceServers: [] });
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
    const handle = await this.deps.session.attach((event) => void this.onEvent(event));
    this.handle = handle;
    this.deps.onStep?.('attached');
    await this.deps.session.message(handle, { request: 'watch', id: this.deps.mountpoint });
    this.deps.onStep?.('watched');
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
      if (event.jsep?.type !== 'offer') return;
      this.deps.onStep?.('offer');
      // Trickle ICE: the answer goes at once and each local candidate follows it, instead of waiting
      // for gathering to finish (hundreds of ms on a machine with several interfaces).
      pc.onicecandidate = ({ candidate }) => {
        if (this.closed) return;
        void this.deps.session
          .trickle(handle, candidate ? candidate.toJSON() : { completed: true })
          .catch(() => undefined);
      };
      await pc.setRemoteDescription(event.jsep);
      await pc.setLocalDescription(await pc.createAnswer());
      const answer = pc.localDescription;
      if (!answer || this.closed) return;
      this.deps.onStep?.('answered');
      // Zero playout delay (Janus's playout-delay extension), asked for alongside the start.
      const configured = this.deps.session.message(handle, {
        request: 'configure',
        min_delay: 0,
        max_delay: 0,
      });
      await this.deps.session.message(
        handle,
        { request: 'start' },
        { type: answer.type, sdp: answer.sdp, trickle: true },
      );
      this.deps.onStep?.('started');
      await configured;
    } catch (error) {
      this.fail((error as Error).message);
    }
  }
}
