// Messages between a camera's supervisor (camera.ts) and its worker process (worker.ts, Node IPC). Kept in one small module so
// both sides agree on the shape; the parent validates nothing here because it spawned the child itself.
import type { RtcpRelayPlan } from './rtcp-relay.js';

export type ToWorker =
  /**
   * `payloader` and `meter` name the elements whose counters the worker reads once a second; `preroll`
   * the pre-roll branch's multifilesink whose finished segments it reports (undefined: no pre-roll branch).
   */
  | {
      type: 'run';
      description: string;
      payloader: string;
      meter: string;
      preroll: string | undefined;
      /** With rtp.rtcp: the worker relays the camera's RTCP to and from the SFU (rtcp-relay.ts). */
      rtcpRelay: RtcpRelayPlan | undefined;
      /** The stamped test source's appsrc, which the worker feeds (stamped-feeder.ts); else undefined. */
      stampedSource: string | undefined;
    }
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
  /** `path`: the element's path in the pipeline (`/GstPipeline:pipeline0/GstSplitMuxSink:preroll/GstFileSink:sink`). */
  | {
      type: 'error';
      message: string;
      element: string | undefined;
      path?: string | undefined;
      debug: string | undefined;
    }
  | { type: 'eos' }
  /**
   * The pre-roll branch (multifilesink) closed a segment file: every byte of its GOP is in it. Times
   * are the pipeline's running time of its first buffer and of the next segment's first buffer, and the
   * same on the steady clock (clock.ts; the steady time when the pipeline started playing, plus the
   * running time). The start is undefined for the worker's first file (nothing reports when it began).
   */
  | {
      type: 'segment';
      location: string;
      startNs: number | undefined;
      endNs: number;
      startSteadyMs: number | undefined;
      endSteadyMs: number;
    };
