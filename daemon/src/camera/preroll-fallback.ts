// When a camera's pre-roll branch fails (a full /run, a folder that is not writable), the camera runs
// without it for a while, then tries it again. A GStreamer flow error in one tee branch stops the whole
// pipeline, RTP included, so a branch that keeps failing would otherwise keep the camera restarting:
// this way it costs at most two short RTP gaps per retry period (docs/clips.md, "When the branch fails").
import { PREROLL_MUX_NAME, PREROLL_SINK_NAME } from './pipeline.js';

/**
 * Why the pre-roll branch failed, for status and the log: GStreamer's message, and the system's reason
 * when the debug text's last line carries it (multifilesink says "Error while writing to file." and puts
 * "No space left on device" there).
 */
export function preRollFailure(message: string, debug: string | undefined): string {
  const lines = debug?.split('\n') ?? [];
  const cause = lines.length > 1 ? lines.at(-1)?.trim() : undefined;
  return cause && !message.includes(cause) ? `${message} (${cause})` : message;
}

/** Whether an element path is the pre-roll branch's muxer or file sink. */
export function isPreRollElement(path: string | undefined): boolean {
  return path !== undefined && new RegExp(`:(${PREROLL_SINK_NAME}|${PREROLL_MUX_NAME})(/|$)`).test(path);
}

/** Whether the branch is left out now, until when and why. Times are performance.now() (monotonic). */
export class PreRollFallback {
  private off: { until: number; reason: string } | undefined;

  constructor(private readonly retryMs: number) {}

  /** Why the branch is left out now, or undefined. */
  reason(): string | undefined {
    return this.off?.reason;
  }

  /** Milliseconds until the branch is tried again (0 when it is due, or on). */
  msUntilRetry(now = performance.now()): number {
    return this.off ? Math.max(0, this.off.until - now) : 0;
  }

  /**
   * A worker reported an error at `path`: when it is the branch's and the branch is on, switch it off
   * for the retry period and return the reason; otherwise undefined.
   */
  failed(path: string | undefined, message: string, debug: string | undefined): string | undefined {
    if (this.off || !isPreRollElement(path)) return undefined;
    this.off = { until: performance.now() + this.retryMs, reason: preRollFailure(message, debug) };
    return this.off.reason;
  }

  /** Before a launch: once the retry period is over, the branch is on again. Returns the reason it was off. */
  retryIfDue(): string | undefined {
    if (!this.off || performance.now() < this.off.until) return undefined;
    const reason = this.off.reason;
    this.off = undefined;
    return reason;
  }

  /** Whether a launch now leaves the branch out. */
  isOff(): boolean {
    return this.off !== undefined;
  }
}
