// Messages between the daemon and a GStreamer worker process (Node IPC). Kept in one small module so
// both sides agree on the shape; the parent validates nothing here because it spawned the child itself.

/** One element to look for in the registry, with an optional trial pipeline that must reach EOS. */
export interface ProbeCandidate {
  factory: string;
  trial: string | undefined;
}

export interface ProbeResult {
  factory: string;
  present: boolean;
  /** undefined when no trial was asked for. */
  trialOk: boolean | undefined;
  error: string | undefined;
}

export type ToWorker =
  | { type: 'run'; description: string; payloader: string }
  | { type: 'probe'; candidates: ProbeCandidate[]; trialTimeoutMs: number }
  | { type: 'stop' };

export type FromWorker =
  /** The pipeline parsed and was asked to play. */
  | { type: 'started' }
  /** Once a second: RTP packets sent so far (the payloader's sequence counter, unwrapped). */
  | { type: 'stats'; packets: number }
  | { type: 'error'; message: string; element: string | undefined; debug: string | undefined }
  | { type: 'eos' }
  | { type: 'probed'; results: ProbeResult[] };
