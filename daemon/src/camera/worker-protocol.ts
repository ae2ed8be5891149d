// Messages between the daemon and a GStreamer worker process (Node IPC). Kept in one small module so
// both sides agree on the shape; the parent validates nothing here because it spawned the child itself.
import type { RtcpRelayPlan } from './rtcp-relay.js';

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

export type ToWorker =
  /** `payloader` and `meter` name the elements whose counters the worker reads once a second. */
  | {
      type: 'run';
      description: string;
      payloader: string;
      meter: string;
      /** With rtp.rtcp: the worker relays the camera's RTCP to and from the SFU (rtcp-relay.ts). */
      rtcpRelay: RtcpRelayPlan | undefined;
    }
  | { type: 'probe'; candidates: ProbeCandidate[]; trialTimeoutMs: number }
  | { type: 'stop' };

export type FromWorker =
  /** The pipeline parsed and was asked to play. */
  | { type: 'started' }
  /**
   * Once a second, counters since the pipeline started: RTP packets sent (the payloader's sequence
   * counter, unwrapped), and the encoded frames and bytes that passed the meter (an `identity`
   * element after the encoder). `atMs` is the worker's monotonic clock when they were read, so rates
   * do not depend on IPC delay.
   */
  | { type: 'stats'; packets: number; frames: number; bytes: number; atMs: number }
  | { type: 'error'; message: string; element: string | undefined; debug: string | undefined }
  | { type: 'eos' }
  | { type: 'probed'; results: ProbeResult[] };
