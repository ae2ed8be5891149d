// Supervises one camera: runs its pipeline in a worker process (worker.ts), watches it stream, and
// restarts it with capped exponential backoff and jitter when it errors, ends, stalls or dies. A camera
// that cannot stream never stops the daemon: other cameras and the broker keep running. What it measures
// is rates.ts; when the pre-roll branch is left out, preroll-fallback.ts; what it scrubs from the log,
// redact.ts.
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { CameraConfig, Config } from '../config/schema.js';
import { describeError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import type { EncoderChoice, EncoderName } from './encoders.js';
import type { MountpointStatus } from './janus.js';
import { renderPipeline } from '../gst/describe.js';
import { forkWorker } from '../gst/fork.js';
import {
  cameraChain,
  METER_NAME,
  PAYLOADER_NAME,
  PREROLL_SINK_NAME,
  rtcpRelayPlan,
  type PreRollBranch,
} from './pipeline.js';
import type { RtcpRelayPlan } from './rtcp-relay.js';
import { PreRollFallback } from './preroll-fallback.js';
import { RateMeter } from './rates.js';
import { redactSecrets } from './redact.js';
import { checkDevice } from './sources.js';
import { loadSrtpKey } from './srtp.js';
import { isStamped, STAMPED_SOURCE_NAME } from './stamped-source.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

/** `failed`: cannot run until a person changes something (forced encoder missing, bad settings). */
export type CameraState = 'starting' | 'streaming' | 'restarting' | 'failed' | 'stopped';

/** The part of Encoders a camera needs. */
export interface EncoderChooser {
  choose(requested: EncoderChoice, camera: string): EncoderName;
  /** Throws when an element the source needs (libcamerasrc on a non-Pi…) is missing. */
  requireSource(source: CameraConfig['source'], camera: string): void;
}

export interface CameraTimings {
  /** No new RTP packet for this long while running counts as a stall. */
  stallMs: number;
  /** First and largest restart delay; each failure doubles it, ±20 % jitter. */
  backoffMinMs: number;
  backoffMaxMs: number;
  /** How long a worker gets to exit after `stop` before SIGTERM, then SIGKILL. */
  exitGraceMs: number;
  /**
   * After the pre-roll branch failed (a full /run, a read-only folder), the camera runs without it for
   * this long, then restarts with it to try again. A GStreamer flow error in a tee branch stops the
   * whole pipeline, RTP included, so a branch that keeps failing would otherwise keep the camera
   * restarting: this way it costs at most two short RTP gaps per period. Default PREROLL_RETRY_MS.
   */
  preRollRetryMs?: number;
}

export const DEFAULT_TIMINGS: CameraTimings = {
  stallMs: 5000,
  backoffMinMs: 1000,
  backoffMaxMs: 30_000,
  exitGraceMs: 1500,
};

/**
 * The narrow hook between a camera and its clip pre-roll (clips/preroll.ts): the camera's pipeline
 * writes keyframe-aligned segments where the hook says and reports each finished one; the clip side
 * owns the folder, prunes it and reads it. No frame passes through JavaScript.
 */
export interface PreRollHook {
  /** Segment length: the camera's keyframe interval (the branch starts a file at every keyframe). */
  readonly segmentSeconds: number;
  /** A new worker is about to start: forget the last one's segments; where this one writes (`%d` pattern). */
  launch(): string;
  /**
   * A finished segment file (closed: its whole GOP is in it), with the steady-clock range it covers;
   * `startAt` is undefined for a worker's first file, whose start nothing reports.
   */
  segment(segment: { path: string; startAt: number | undefined; endAt: number }): void;
}

/** CameraTimings.preRollRetryMs by default. */
export const PREROLL_RETRY_MS = 60_000;

export interface CameraDeps {
  camera: CameraConfig;
  sfu: Config['sfu'];
  encoders: EncoderChooser;
  log: Logger;
  timings?: CameraTimings;
  /**
   * sfu.mode janus: the mountpoint that receives this camera, shown in its status; told when a worker
   * starts sending (with SRTP it is re-created: camera/janus.ts).
   */
  mountpoint?: { status(): MountpointStatus; streamStarted?(): void };
  /** Where the pre-roll branch writes; undefined: no pre-roll branch (no clips from this camera). */
  preroll?: PreRollHook;
}

export class Camera implements Service {
  readonly name: string;
  private worker: ChildProcess | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private state: CameraState = 'stopped';
  private failures = 0;
  private packets = 0;
  private restarts = 0;
  /** With rtp.rtcp the worker relays the camera's RTCP to and from the SFU (rtcp-relay.ts). */
  private rtcpRelay: RtcpRelayPlan | undefined;
  private lastError: string | undefined;
  /** Measured output (fps, kbit/s) from the current worker's counters. */
  private readonly rates = new RateMeter();
  private lastStatsAt = 0;
  private lastProgressAt = 0;
  private stopping = false;
  /** Resolves when every worker ended so far has exited (see endWorker). */
  private exiting: Promise<void> = Promise.resolve();
  private encoder: EncoderName | undefined;
  private description = '';
  /**
   * The SRTP key's hex and an RTSP camera's password: scrubbed from anything logged (GStreamer echoes a
   * description it refuses).
   */
  private secrets: string[] = [];
  private logDescription = '';
  /** Whether the pre-roll branch is left out after it failed, until when and why. */
  private readonly preRollFallback: PreRollFallback;
  /** Restarts a camera running without its pre-roll once its retry period has passed. */
  private preRollRetryTimer: NodeJS.Timeout | undefined;
  /** The pipeline without the pre-roll's location, which changes at each launch. */
  private chainFor: ((preroll: PreRollBranch | undefined) => ReturnType<typeof cameraChain>) | undefined;

  private readonly timings: CameraTimings;

  constructor(private readonly deps: CameraDeps) {
    this.timings = deps.timings ?? DEFAULT_TIMINGS;
    this.name = `camera ${deps.camera.name}`;
    this.preRollFallback = new PreRollFallback(this.timings.preRollRetryMs ?? PREROLL_RETRY_MS);
  }

  /** What a status line or (later) the retained MQTT state shows. */
  status(): {
    state: CameraState;
    packets: number;
    restarts: number;
    lastError: string | undefined;
    workerPid: number | undefined;
    encoder: EncoderName | undefined;
    /** Encoded frames per second and kbit/s leaving the encoder, measured over the last ~5 s. */
    fps: number | undefined;
    bitrateKbps: number | undefined;
    /** Janus mode only: whether the SFU has a mountpoint for this camera, and why not. */
    mountpoint: MountpointStatus | undefined;
    /** Why the pre-roll branch is left out now (it failed), or undefined. */
    preRollOff: string | undefined;
  } {
    return {
      preRollOff: this.preRollFallback.reason(),
      mountpoint: this.deps.mountpoint?.status(),
      encoder: this.encoder,
      fps: this.rates.fps,
      bitrateKbps: this.rates.bitrateKbps,
      state: this.state,
      packets: this.packets,
      restarts: this.restarts,
      lastError: this.lastError,
      workerPid: this.worker?.pid,
    };
  }

  async start(): Promise<void> {
    this.stopping = false;
    // Choose and render first: a forced encoder that is missing, or settings GStreamer cannot take,
    // will not fix themselves by retrying. The camera is `failed`; the rest of the daemon runs on.
    try {
      this.deps.encoders.requireSource(this.deps.camera.source, this.deps.camera.name);
      // An RTSP camera's H.264 is passed through: no encoder of ours runs.
      this.encoder =
        this.deps.camera.source.type === 'rtsp'
          ? undefined
          : this.deps.encoders.choose(this.deps.camera.encoder, this.deps.camera.name);
      const srtp = this.deps.sfu.srtp ? loadSrtpKey(this.deps.sfu.srtp) : undefined;
      this.secrets = [
        ...(srtp ? [Buffer.from(srtp.masterKey).toString('hex')] : []),
        ...(this.deps.camera.source.type === 'rtsp' && this.deps.camera.source.password !== undefined
          ? [this.deps.camera.source.password]
          : []),
      ];
      const encoder = this.encoder;
      this.chainFor = (preroll) => cameraChain(this.deps.camera, this.deps.sfu, encoder, srtp, preroll);
      // Rendered here to refuse bad settings before any worker starts, and for the log line; with a
      // pre-roll, each launch renders it again with its own segment location (this one is a placeholder).
      const chain = this.chainFor(
        this.deps.preroll
          ? { location: 'preroll-%08d.ts', segmentSeconds: this.deps.preroll.segmentSeconds }
          : undefined,
      );
      this.rtcpRelay = rtcpRelayPlan(this.deps.camera, this.deps.sfu);
      this.description = renderPipeline(chain);
      this.logDescription = renderPipeline(chain, { redact: true });
    } catch (error) {
      this.lastError = describeError(error);
      this.deps.log.error({ err: error, reason: this.lastError }, 'camera cannot start');
      this.setState('failed');
      return;
    }
    this.deps.log.info({ encoder: this.encoder, pipeline: this.logDescription }, 'camera pipeline');
    await this.launch(this.description);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.stallTimer);
    clearTimeout(this.preRollRetryTimer);
    this.restartTimer = undefined;
    this.stallTimer = undefined;
    this.preRollRetryTimer = undefined;
    await this.endWorker();
    this.rates.zero();
    this.setState('stopped');
  }

  healthy(): boolean {
    if (this.stopping) return false;
    // Failing but handled: backing off before the next try, or waiting for a person to fix the config.
    if (this.restartTimer || this.state === 'failed') return true;
    return this.worker !== undefined && performance.now() - this.lastStatsAt < this.timings.stallMs * 2;
  }

  /** Fork the worker; resolves once the pipeline is playing or the attempt has failed (and is rescheduled). */
  private launch(rendered: string): Promise<void> {
    let description = rendered;
    this.setState(this.restarts === 0 && this.failures === 0 ? 'starting' : 'restarting');
    try {
      // An unplugged USB camera: no worker, retry with backoff, so it starts when plugged back in.
      checkDevice(this.deps.camera.source, this.deps.camera.name);
    } catch (error) {
      this.scheduleRestart(describeError(error), undefined);
      return Promise.resolve();
    }
    const retried = this.preRollFallback.retryIfDue();
    if (retried !== undefined)
      this.deps.log.info({ after: retried }, 'camera pre-roll: trying the branch again');
    if (this.deps.preroll && this.chainFor && this.preRollFallback.isOff()) {
      // Streaming without the pre-roll: clips leave this camera out until the branch is back.
      description = renderPipeline(this.chainFor(undefined));
    } else if (this.deps.preroll && this.chainFor) {
      // Each worker writes its own segment files: a clip still reading the last one's keeps them.
      try {
        const location = this.deps.preroll.launch();
        description = renderPipeline(
          this.chainFor({ location, segmentSeconds: this.deps.preroll.segmentSeconds }),
        );
      } catch (error) {
        this.scheduleRestart(describeError(error), undefined);
        return Promise.resolve();
      }
    }
    const worker = forkWorker(import.meta.url, 'worker');
    this.worker = worker;
    this.deps.mountpoint?.streamStarted?.();
    clearTimeout(this.preRollRetryTimer);
    this.preRollRetryTimer = undefined;
    if (this.deps.preroll && this.preRollFallback.isOff()) {
      // Running without the pre-roll: when its time is up, restart with it (not a failure: no backoff).
      this.preRollRetryTimer = setTimeout(() => {
        this.preRollRetryTimer = undefined;
        if (this.stopping || this.restartTimer || this.worker !== worker) return;
        void this.endWorker().then(() => {
          if (this.stopping || this.restartTimer || this.worker !== undefined) return;
          this.restarts += 1;
          return this.launch(this.description);
        });
      }, this.preRollFallback.msUntilRetry());
    }
    this.lastStatsAt = performance.now();
    this.lastProgressAt = performance.now();
    this.rates.restart();
    let lastPackets = 0;

    return new Promise<void>((resolve) => {
      const settle = (): void => resolve();
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'started':
            settle();
            break;
          case 'stats':
            // A worker being ended after a failure may still report: its packets do not make the
            // camera `streaming` again.
            if (this.worker !== worker) break;
            this.lastStatsAt = performance.now();
            this.rates.add(message);
            if (message.packets > lastPackets) {
              this.packets += message.packets - lastPackets;
              lastPackets = message.packets;
              this.lastProgressAt = performance.now();
              if (this.state !== 'streaming') {
                this.failures = 0;
                this.setState('streaming');
              }
            }
            break;
          case 'error':
            if (this.deps.preroll && this.worker === worker) {
              const reason = this.preRollFallback.failed(message.path, message.message, message.debug);
              if (reason !== undefined)
                this.deps.log.error(
                  { reason, path: message.path, retryInMs: this.timings.preRollRetryMs ?? PREROLL_RETRY_MS },
                  'camera pre-roll branch failed: restarting the camera without it (no clips from it meanwhile); check the free space of the pre-roll folder (clips.preRollDir)',
                );
            }
            this.fail(worker, `${message.element ?? 'pipeline'}: ${message.message}`, message.debug);
            settle();
            break;
          case 'eos':
            this.fail(worker, 'pipeline ended (end of stream)', undefined);
            settle();
            break;
          case 'segment':
            this.deps.preroll?.segment({
              path: message.location,
              startAt: message.startSteadyMs,
              endAt: message.endSteadyMs,
            });
            break;
        }
      });
      worker.on('error', (error) => {
        this.fail(worker, `worker process: ${error.message}`, undefined);
        settle();
      });
      worker.on('exit', (code, signal) => {
        if (this.worker === worker) {
          this.worker = undefined;
          this.fail(worker, `worker exited (${signal ?? `code ${code}`})`, undefined);
        }
        settle();
      });
      worker.send({
        type: 'run',
        description,
        payloader: PAYLOADER_NAME,
        meter: METER_NAME,
        rtcpRelay: this.rtcpRelay,
        preroll: this.deps.preroll ? PREROLL_SINK_NAME : undefined,
        stampedSource: isStamped(this.deps.camera) ? STAMPED_SOURCE_NAME : undefined,
      } satisfies ToWorker);
      clearInterval(this.stallTimer);
      this.stallTimer = setInterval(
        () => {
          if (this.worker === worker && performance.now() - this.lastProgressAt > this.timings.stallMs) {
            this.fail(worker, `stalled: no RTP packet for ${this.timings.stallMs} ms`, undefined);
          }
        },
        Math.min(1000, this.timings.stallMs),
      );
    });
  }

  /** Record a failure of `worker`, end it, and schedule the next attempt. Ignores stale workers. */
  private fail(worker: ChildProcess, reason: string, debug: string | undefined): void {
    if (this.stopping || this.restartTimer) return;
    if (this.worker !== undefined && this.worker !== worker) return;
    this.scheduleRestart(reason, debug);
  }

  /** Count a failure, back off, and launch again (ending the current worker first, if any). */
  private scheduleRestart(reason: string, debug: string | undefined): void {
    if (this.stopping || this.restartTimer) return;
    reason = redactSecrets(reason, this.secrets);
    debug = redactSecrets(debug, this.secrets);
    this.failures += 1;
    this.lastError = reason;
    // Nothing flows until the next worker measures again: say 0, not the last good figure.
    this.rates.zero();
    const base = Math.min(this.timings.backoffMaxMs, this.timings.backoffMinMs * 2 ** (this.failures - 1));
    const delayMs = Math.round(base * (0.8 + Math.random() * 0.4));
    this.deps.log.warn({ reason, debug, retryInMs: delayMs, failures: this.failures }, 'camera failed');
    this.setState('restarting');
    clearInterval(this.stallTimer);
    this.stallTimer = undefined;
    this.restartTimer = setTimeout(() => {
      void this.endWorker().then(() => {
        this.restartTimer = undefined;
        if (this.stopping) return;
        this.restarts += 1;
        return this.launch(this.description);
      });
    }, delayMs);
    void this.endWorker();
  }

  /**
   * End the current worker (if any). Resolves only when every worker this camera ended so far has
   * really exited: a failure starts ending its worker at once, and the restart that follows the
   * backoff awaits this, so a new pipeline never runs beside a dying one.
   */
  private endWorker(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const previous = this.exiting;
      this.exiting = Promise.all([previous, this.terminate(worker)]).then(() => undefined);
    }
    return this.exiting;
  }

  /** Ask the worker to stop, then SIGTERM, then SIGKILL; resolves when it has really exited. */
  private async terminate(worker: ChildProcess): Promise<void> {
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const escalate = async (signal: NodeJS.Signals | undefined): Promise<boolean> => {
      if (signal) worker.kill(signal);
      else if (worker.connected) worker.send({ type: 'stop' } satisfies ToWorker);
      else worker.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.timings.exitGraceMs);
      });
      const outcome = await Promise.race([exited.then(() => true), grace]);
      clearTimeout(timer);
      return outcome;
    };
    if (await escalate(undefined)) return;
    if (await escalate('SIGTERM')) return;
    this.deps.log.error('camera worker ignored SIGTERM; killing it');
    worker.kill('SIGKILL');
    await exited;
  }

  private setState(state: CameraState): void {
    if (state === this.state) return;
    this.state = state;
    this.deps.log.info({ state, restarts: this.restarts }, 'camera state');
  }
}
