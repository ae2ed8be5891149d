// sfu.mode janus: keeps one Janus streaming-plugin RTP mountpoint per camera on the site's Janus, over
// its HTTP API (https://janus.conf.meetecho.com/docs/rest.html, streaming plugin 1.1.x `media` arrays).
// The camera streams RTP whatever happens here: Janus down only means its mountpoint is `missing`, with
// the reason in its status and the log, and this loop tries again with backoff.
//
// One loop does everything, every `checkMs`: keepalive on the session (Janus drops a session after
// 60 s of silence), then `info` on each mountpoint; a missing one is created, one whose settings
// differ is destroyed and created again. A Janus restart shows up as "no such session" (458) or a
// refused connection: the session is dropped and rebuilt, and the mountpoints with it.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { mountpointIdFor, SRTP_SUITES, type Config } from '../config/schema.js';
import { describeError, OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { h264Level, type SrtpKey } from './pipeline.js';
import { loadSrtpKey, srtpKeyBase64 } from './srtp.js';

export interface MountpointStatus {
  /** The Janus streaming mountpoint id viewers ask for. */
  id: number;
  state: 'present' | 'missing';
  /** Why it is missing; undefined while present. */
  reason: string | undefined;
  /** Janus's `age_ms` at the last check: time since it last received RTP on this mountpoint. */
  ageMs: number | undefined;
  /** How many times this daemon created it (each Janus restart adds one). */
  creations: number;
}

export interface JanusTimings {
  /** Interval of the keepalive + check loop; below Janus's 60 s session timeout. */
  checkMs: number;
  /** Bound on each HTTP request. */
  requestTimeoutMs: number;
  /** Delay after a failed cycle: first and largest, doubling, ±20 % jitter. */
  backoffMinMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_JANUS_TIMINGS: JanusTimings = {
  // 2 s: a console tile plays again within a few seconds of a Janus restart (two small HTTP requests
  // per camera per round on the LAN).
  checkMs: 2000,
  requestTimeoutMs: 3000,
  backoffMinMs: 1000,
  backoffMaxMs: 30_000,
};

/** Janus API error codes this code acts on (janus/apierror.h, plugins/janus_streaming.c). */
const NO_SUCH_SESSION = 458;
const NO_SUCH_HANDLE = 459;
const NO_SUCH_MOUNTPOINT = 455;

/** A failed Janus request: `janusCode` is Janus's own error code when it answered. */
export class JanusRequestError extends OutpostError {
  readonly janusCode: number | undefined;
  constructor(message: string, options: { janusCode: number | undefined; hint: string; cause?: unknown }) {
    super('JANUS_REQUEST_FAILED', message, { hint: options.hint, cause: options.cause });
    this.janusCode = options.janusCode;
  }
  /** Janus no longer knows our session or handle: it restarted, or the session timed out. */
  get sessionGone(): boolean {
    return this.janusCode === NO_SUCH_SESSION || this.janusCode === NO_SUCH_HANDLE;
  }
}

interface JanusReply {
  janus: string;
  data?: { id?: number };
  error?: { code: number; reason: string };
  plugindata?: { data?: Record<string, unknown> };
}

/** The bare Janus HTTP API: one POST per request, JSON in and out, each bounded by a timeout. */
export class JanusClient {
  private transactions = 0;

  constructor(
    private readonly url: string,
    private readonly apiSecret: string | undefined,
    private readonly timeoutMs: number,
  ) {}

  async createSession(signal: AbortSignal): Promise<number> {
    return this.id(await this.post('', { janus: 'create' }, signal), 'create session');
  }

  async attachStreaming(session: number, signal: AbortSignal): Promise<number> {
    const reply = await this.post(
      `/${session}`,
      { janus: 'attach', plugin: 'janus.plugin.streaming' },
      signal,
    );
    return this.id(reply, 'attach to janus.plugin.streaming');
  }

  async keepalive(session: number, signal: AbortSignal): Promise<void> {
    await this.post(`/${session}`, { janus: 'keepalive' }, signal);
  }

  async destroySession(session: number, signal: AbortSignal): Promise<void> {
    await this.post(`/${session}`, { janus: 'destroy' }, signal);
  }

  /** A synchronous streaming-plugin request; resolves with the plugin's data, rejects on its error. */
  async streaming(
    session: number,
    handle: number,
    body: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    const reply = await this.post(`/${session}/${handle}`, { janus: 'message', body }, signal);
    const data = reply.plugindata?.data;
    if (!data) throw this.error(`streaming ${String(body.request)}: no plugin data in the reply`, undefined);
    if (typeof data.error_code === 'number') {
      throw this.error(`streaming ${String(body.request)}: ${String(data.error)}`, data.error_code);
    }
    return data;
  }

  private async post(path: string, body: Record<string, unknown>, signal: AbortSignal): Promise<JanusReply> {
    const request = {
      ...body,
      transaction: `outpost-${++this.transactions}`,
      ...(this.apiSecret ? { apisecret: this.apiSecret } : {}),
    };
    let reply: JanusReply;
    try {
      const response = await fetch(this.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
      reply = (await response.json()) as JanusReply;
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      const reason =
        (error as Error).name === 'TimeoutError'
          ? `no answer within ${this.timeoutMs} ms`
          : (cause ?? (error as Error).message);
      throw new JanusRequestError(`Janus at ${this.url} unreachable: ${reason}`, {
        janusCode: undefined,
        hint: 'check that Janus runs and that sfu.janus.url points at its HTTP transport (janus.transport.http.jcfg)',
        cause: error,
      });
    }
    if (reply.janus === 'error') {
      throw this.error(reply.error?.reason ?? 'error without a reason', reply.error?.code);
    }
    return reply;
  }

  private id(reply: JanusReply, what: string): number {
    const id = reply.data?.id;
    if (typeof id !== 'number') throw this.error(`${what}: no id in the reply`, undefined);
    return id;
  }

  private error(message: string, code: number | undefined): JanusRequestError {
    const hint =
      code === 403
        ? 'Janus refused the API secret: set sfu.janus.apiSecret to janus.jcfg api_secret'
        : code === 456 || code === 457
          ? 'the streaming plugin refused the request: check sfu.janus.adminKey (admin_key) and sfu.janus.secret'
          : 'see the Janus log for the reason';
    return new JanusRequestError(`Janus: ${message}${code === undefined ? '' : ` (code ${code})`}`, {
      janusCode: code,
      hint,
    });
  }
}

/** What one camera's mountpoint should look like. */
interface WantedMountpoint {
  camera: string;
  id: number;
  port: number;
  /**
   * Where Janus takes RTCP from this camera (rtp.port + 1), when it sends any. Janus latches onto the
   * address those reports come from and sends its keyframe requests (PLI) there: when a viewer's
   * media starts, and when a viewer asks (janus_streaming_setup_media / _incoming_rtcp, 1.1.2).
   */
  rtcpPort: number | undefined;
  pt: number;
  fmtp: string;
  /** Fingerprint of every setting, kept in the mountpoint's metadata: a change means re-create. */
  fingerprint: string;
  /**
   * The camera's SRTP stream started again (a new worker or a new daemon): its sequence numbers
   * start afresh, below what the mountpoint's SRTP context last saw half the time, and libsrtp drops
   * every packet as a replay (srtp_err_status_replay_old). The mountpoint is re-created, which gives it
   * a fresh context.
   */
  restarted: boolean;
  status: MountpointStatus;
}

/** What a camera holds of its mountpoint. */
export interface CameraMountpoint {
  status(): MountpointStatus;
  /** A worker of this camera started sending (its RTP sequence starts afresh). */
  streamStarted(): void;
}

/** Keeps a Janus streaming mountpoint per camera. A Service, started before the cameras. */
export class JanusMountpoints implements Service {
  readonly name = 'janus';
  private readonly wanted: WantedMountpoint[];
  private readonly janus: Config['sfu']['janus'];
  private readonly client: JanusClient;
  private srtp: SrtpKey | undefined;
  private session: number | undefined;
  private handle: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private cycle: Promise<void> | undefined;
  private abort = new AbortController();
  private failures = 0;
  private running = false;
  private lastProblem: string | undefined;

  constructor(
    private readonly config: Pick<Config, 'site' | 'device' | 'sfu' | 'cameras'>,
    private readonly log: Logger,
    private readonly timings: JanusTimings = DEFAULT_JANUS_TIMINGS,
  ) {
    this.janus = config.sfu.janus;
    this.client = new JanusClient(this.url(), this.janus.apiSecret, timings.requestTimeoutMs);
    this.wanted = config.cameras.map((camera, index) => ({
      camera: camera.name,
      id: mountpointIdFor(config, index),
      port: camera.rtp.port,
      rtcpPort: camera.rtp.rtcp ? camera.rtp.port + 1 : undefined,
      pt: camera.rtp.payloadType,
      // Constrained baseline (42e0) at the level the stream needs: what every browser decodes.
      fmtp: `profile-level-id=42e0${levelIdc(h264Level(camera.width, camera.height, camera.framerate))};packetization-mode=1`,
      fingerprint: '',
      restarted: false,
      status: {
        id: mountpointIdFor(config, index),
        state: 'missing',
        reason: 'not checked yet',
        ageMs: undefined,
        creations: 0,
      },
    }));
  }

  /**
   * Camera `name`'s mountpoint: its status (a live view, read by the camera's own status), and
   * `streamStarted()`, which the camera calls each time a worker starts sending.
   */
  mountpoint(name: string): CameraMountpoint {
    const wanted = this.wanted.find((w) => w.camera === name);
    if (!wanted) throw new Error(`no Janus mountpoint for camera ${name}`);
    return {
      status: () => ({ ...wanted.status }),
      streamStarted: () => {
        if (!this.config.sfu.srtp) return; // plain RTP: Janus follows a new sequence as it comes
        wanted.restarted = true;
        this.checkSoon();
      },
    };
  }

  /** The next round now, unless one is running (it is followed by another within checkMs). */
  private checkSoon(): void {
    if (!this.running || this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule(0);
  }

  /** Starts the loop and returns at once: a Janus that is down must not hold up the cameras. */
  start(): Promise<void> {
    this.running = true;
    this.abort = new AbortController();
    try {
      this.srtp = this.config.sfu.srtp ? loadSrtpKey(this.config.sfu.srtp) : undefined;
    } catch (error) {
      // The cameras report the same key problem as `failed`; nothing to create until it is fixed.
      this.markAll(describeError(error));
      this.log.error({ err: error }, 'janus mountpoints not created: bad SRTP key');
      return Promise.resolve();
    }
    for (const wanted of this.wanted) wanted.fingerprint = this.fingerprint(wanted);
    this.schedule(0);
    return Promise.resolve();
  }

  /**
   * Ends the loop and the session. Mountpoints stay: a daemon restart keeps viewers watching (with
   * SRTP, the next run re-creates each one as its camera starts).
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.cycle;
    const session = this.session;
    this.session = undefined;
    this.handle = undefined;
    if (session !== undefined) {
      await this.client
        .destroySession(session, AbortSignal.timeout(this.timings.requestTimeoutMs))
        .catch(() => undefined);
    }
  }

  /** Janus being down is reported per camera, never a reason for systemd to restart the daemon. */
  healthy(): boolean {
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.cycle = this.check().then((next) => this.schedule(next));
    }, delayMs);
  }

  /** One round: session, keepalive, every mountpoint. Resolves with the delay to the next round. */
  private async check(): Promise<number> {
    const signal = this.abort.signal;
    try {
      await this.ensureSession(signal);
      for (const wanted of this.wanted) await this.ensureMountpoint(wanted, signal);
      this.failures = 0;
      this.report(undefined);
      return this.timings.checkMs;
    } catch (error) {
      if (!this.running) return 0;
      if (error instanceof JanusRequestError && (error.sessionGone || error.janusCode === undefined)) {
        this.session = undefined;
        this.handle = undefined;
      }
      this.failures += 1;
      const reason = describeError(error);
      this.markAll(reason);
      const base = Math.min(this.timings.backoffMaxMs, this.timings.backoffMinMs * 2 ** (this.failures - 1));
      const retryInMs = Math.round(base * (0.8 + Math.random() * 0.4));
      this.report(reason, retryInMs);
      return retryInMs;
    }
  }

  private async ensureSession(signal: AbortSignal): Promise<void> {
    if (this.session !== undefined && this.handle !== undefined) {
      try {
        await this.client.keepalive(this.session, signal);
        return;
      } catch (error) {
        if (!(error instanceof JanusRequestError && error.sessionGone)) throw error;
        // Janus restarted (or we were silent past its session timeout): its mountpoints went too.
        this.log.warn({ session: this.session, reason: describeError(error) }, 'janus session gone');
        this.markAll('Janus lost the session (restarted?); re-creating');
      }
    }
    this.session = await this.client.createSession(signal);
    this.handle = await this.client.attachStreaming(this.session, signal);
    this.log.info({ session: this.session, url: this.url() }, 'janus session');
  }

  /** `info`; create when missing; destroy and create when its settings differ from ours. */
  private async ensureMountpoint(wanted: WantedMountpoint, signal: AbortSignal): Promise<void> {
    const session = this.session!;
    const handle = this.handle!;
    let info: Record<string, unknown> | undefined;
    try {
      const reply = await this.client.streaming(
        session,
        handle,
        { request: 'info', id: wanted.id, ...(this.janus.secret ? { secret: this.janus.secret } : {}) },
        signal,
      );
      info = reply.info as Record<string, unknown> | undefined;
    } catch (error) {
      if (!(error instanceof JanusRequestError && error.janusCode === NO_SUCH_MOUNTPOINT)) throw error;
    }
    const restarted = wanted.restarted;
    if (info && info.metadata === wanted.fingerprint && !restarted) {
      const media = (info.media as Array<{ age_ms?: number }> | undefined)?.[0];
      wanted.status = { ...wanted.status, state: 'present', reason: undefined, ageMs: media?.age_ms };
      return;
    }
    // Cleared before the requests: a stream that starts again while they run is seen next round.
    wanted.restarted = false;
    try {
      if (info) {
        // Someone else's mountpoint on our id, ours with old settings, or an SRTP stream restarted.
        this.log.info(
          { camera: wanted.camera, id: wanted.id },
          info.metadata === wanted.fingerprint
            ? "janus mountpoint re-created: the camera's SRTP stream started again"
            : 'janus mountpoint settings differ; re-creating',
        );
        await this.request({ request: 'destroy', id: wanted.id, permanent: false }, signal);
      }
      await this.request(this.createRequest(wanted), signal);
    } catch (error) {
      wanted.restarted ||= restarted;
      // A refusal for this mountpoint (port taken, wrong admin key) leaves the others alone.
      if (error instanceof JanusRequestError && error.janusCode !== undefined && !error.sessionGone) {
        const reason = describeError(error);
        if (wanted.status.reason !== reason) {
          this.log.error({ camera: wanted.camera, id: wanted.id, reason }, 'janus refused the mountpoint');
        }
        wanted.status = { ...wanted.status, state: 'missing', reason, ageMs: undefined };
        return;
      }
      throw error;
    }
    wanted.status = {
      ...wanted.status,
      state: 'present',
      reason: undefined,
      ageMs: undefined,
      creations: wanted.status.creations + 1,
    };
    this.log.info(
      { camera: wanted.camera, id: wanted.id, port: wanted.port, srtp: this.srtp?.suite ?? 'off' },
      'janus mountpoint created',
    );
  }

  /** A create or destroy: carries the plugin's admin key and the mountpoint's secret when set. */
  private request(body: Record<string, unknown>, signal: AbortSignal): Promise<Record<string, unknown>> {
    const auth = {
      ...(this.janus.adminKey ? { admin_key: this.janus.adminKey } : {}),
      ...(this.janus.secret ? { secret: this.janus.secret } : {}),
    };
    return this.client.streaming(this.session!, this.handle!, { ...body, ...auth }, signal);
  }

  private createRequest(wanted: WantedMountpoint): Record<string, unknown> {
    const srtp = this.srtp;
    return {
      request: 'create',
      type: 'rtp',
      id: wanted.id,
      name: `${this.config.device}-${wanted.camera}`,
      description: `${this.config.site}/${this.config.device} ${wanted.camera}`,
      metadata: wanted.fingerprint,
      // Not written to Janus's config file: the daemon re-creates it after every Janus restart, and a
      // box that is gone leaves nothing behind.
      permanent: false,
      // Offer the playout-delay RTP header extension, so that a viewer can ask for no playout delay
      // (`min_delay`/`max_delay` 0 in watch/configure): Chromium then renders each frame as soon as it
      // is decoded instead of smoothing.
      playoutdelay_ext: true,
      media: [
        {
          type: 'video',
          mid: 'v',
          label: wanted.camera,
          port: wanted.port,
          // A box that sends to Janus on loopback has Janus on the same host: keep its port off the LAN.
          ...(this.loopbackIface() ? { iface: this.loopbackIface() } : {}),
          ...(wanted.rtcpPort ? { rtcpport: wanted.rtcpPort } : {}),
          pt: wanted.pt,
          codec: 'h264',
          fmtp: wanted.fmtp,
          // A new viewer gets the last keyframe at once instead of waiting for the next one. Inside a
          // `media` entry the keys lose their audio/video prefix (janus.plugin.streaming.jcfg, 1.x):
          // `bufferkf`, `rtcpport`, not `videobufferkf`, `videortcpport`.
          bufferkf: true,
        },
      ],
      ...(srtp ? { srtpsuite: SRTP_SUITES[srtp.suite].janusSuite, srtpcrypto: srtpKeyBase64(srtp) } : {}),
    };
  }

  /** The loopback address Janus binds the mountpoint to when sfu.host is loopback; else any. */
  private loopbackIface(): string | undefined {
    const host = this.config.sfu.host;
    if (host === '127.0.0.1' || host === 'localhost') return '127.0.0.1';
    return host === '::1' ? '::1' : undefined;
  }

  private fingerprint(wanted: WantedMountpoint): string {
    const settings = JSON.stringify([
      wanted.port,
      this.loopbackIface(),
      'playoutdelay_ext',
      wanted.rtcpPort,
      wanted.pt,
      wanted.fmtp,
      this.srtp?.suite,
      this.srtp ? srtpKeyBase64(this.srtp) : undefined,
    ]);
    return `outpost:${createHash('sha256').update(settings).digest('hex').slice(0, 16)}`;
  }

  private markAll(reason: string): void {
    for (const wanted of this.wanted) {
      wanted.status = { ...wanted.status, state: 'missing', reason, ageMs: undefined };
    }
  }

  /** Log when the problem changes, not every round: one line per event. */
  private report(problem: string | undefined, retryInMs?: number): void {
    if (problem === this.lastProblem) return;
    if (problem === undefined) this.log.info('janus reachable');
    else this.log.warn({ reason: problem, retryInMs, failures: this.failures }, 'janus mountpoints missing');
    this.lastProblem = problem;
  }

  private url(): string {
    if (this.janus.url) return this.janus.url.replace(/\/+$/, '');
    const host = this.config.sfu.host.includes(':') ? `[${this.config.sfu.host}]` : this.config.sfu.host;
    return `http://${host}:8088/janus`;
  }
}

/** H.264 level as the level_idc byte of profile-level-id: level 3.1 → 1f. */
function levelIdc(level: string): string {
  return Math.round(Number(level) * 10)
    .toString(16)
    .padStart(2, '0');
}
