// Where a clip's video comes from. The real source is each camera's pre-roll buffer (the last
// preRollSeconds of encoded H.264, kept by the camera pipeline) plus the post-roll, muxed without
// re-encoding; until that lands, test-source.ts stands in. The panic path never waits on a source
// before its alert is out.

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
}

export interface ClipSource {
  capture(request: ClipRequest): Promise<CapturedClip>;
}
