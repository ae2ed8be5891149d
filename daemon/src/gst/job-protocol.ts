// Messages between the daemon and a job worker (job-worker.ts, Node IPC): one finite GStreamer job per
// process. Kept in one small module so both sides agree on the shape; the parent validates nothing here
// because it spawned the child itself.

/** One element to look for in the registry, with an optional trial pipeline that must reach EOS. */
export interface ProbeCandidate {
  factory: string;
  /** What to parse to see whether it exists; `fakesrc ! FACTORY ! fakesink` when undefined (a source needs its own). */
  parse: string | undefined;
  trial: string | undefined;
}

export interface ProbeResult {
  factory: string;
  present: boolean;
  /** undefined when no trial was asked for. */
  trialOk: boolean | undefined;
  error: string | undefined;
}

export type ToJobWorker =
  | { type: 'probe'; candidates: ProbeCandidate[]; trialTimeoutMs: number }
  /** Run a finite pipeline (a clip's mux) to its end of stream, answer `ran`, and exit. */
  | { type: 'run-to-end'; description: string; timeoutMs: number };

export type FromJobWorker =
  /** The answer to run-to-end: undefined when it reached its end of stream. */
  { type: 'ran'; error: string | undefined } | { type: 'probed'; results: ProbeResult[] };
