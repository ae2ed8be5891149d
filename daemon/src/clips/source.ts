// Where a clip's video comes from: the interface the panic path captures through. The daemon's source
// is mux.ts (each camera's pre-roll buffer, preroll.ts, plus the post-roll, muxed without re-encoding).
// The panic path never waits on a source before its alert is out.

export interface ClipRequest {
  clipId: string;
  /** Video wanted before and after the press. */
  preMs: number;
  postMs: number;
  cameras: string[];
  /** Wall time of the press. */
  at: number;
  /** Write the MP4 here (a temp path in the clip store); the store fsyncs and renames it. */
  outPath: string;
  /** Aborted when the daemon stops: finish the file early with what was recorded, if possible. */
  signal: AbortSignal;
}

export interface CapturedClip {
  /** The finished MP4 (outPath). */
  path: string;
  durationMs: number;
  /** Wall-clock range the video covers. */
  startAt: number;
  endAt: number;
  /** The cameras whose video is in the clip (a camera that had none is left out); default: the requested ones. */
  cameras?: string[];
}

export interface ClipSource {
  capture(request: ClipRequest): Promise<CapturedClip>;
}
