// Child-process entry for one camera: runs one GStreamer pipeline through gstreamer-superficial and
// reports to its supervisor over IPC. One process per camera because gstreamer-superficial leaks
// ~1.7 MB per Pipeline and pins a libuv thread per pollBus: a restart is a new process, so nothing
// leaks across restarts, and a crash in native code takes down one camera, not the daemon.
import { steadyNow } from '../clock.js';
import { gstreamer, type Pipeline } from '../gst/native.js';
import { RTCP_RELAY, startRtcpRelay, type RtcpRelay, type RtcpRelayPlan } from './rtcp-relay.js';
import { startStampedSource, type StampedSource } from './stamped-feeder.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

const STATS_INTERVAL_MS = 1000;

function send(message: FromWorker, then?: () => void): void {
  process.send?.(message, undefined, {}, () => then?.());
}

let pipeline: Pipeline | undefined;
let statsTimer: NodeJS.Timeout | undefined;
/** Only for `source: { type: test, stamp: true }` (bench:latency): the worker feeds its appsrc. */
let stampedSource: StampedSource | undefined;
let rtcpRelay: RtcpRelay | undefined;

/**
 * identity's `stats` (GStreamer ≥ 1.18) is a GstStructure; gstreamer-superficial hands boxed values
 * over as their string form: `application/x-identity-stats, num-bytes=(guint64)79552, num-buffers=(guint64)15;`.
 */
function meterCounters(stats: unknown): { frames: number; bytes: number } | undefined {
  if (typeof stats !== 'string') return undefined;
  const bytes = /num-bytes=\(guint64\)(\d+)/.exec(stats)?.[1];
  const frames = /num-buffers=\(guint64\)(\d+)/.exec(stats)?.[1];
  if (bytes === undefined || frames === undefined) return undefined;
  return { frames: Number(frames), bytes: Number(bytes) };
}

/**
 * A multifilesink message's running time (a guint64: a number, or its string form); undefined for
 * GST_CLOCK_TIME_NONE (2^64 − 1), which its end-of-stream message can carry.
 */
function runningNs(value: unknown): number | undefined {
  const ns = typeof value === 'number' || typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(ns) && ns >= 0 && ns < 2 ** 63 ? ns : undefined;
}

async function run(
  description: string,
  payloaderName: string,
  meterName: string,
  preRollName: string | undefined,
  relayPlan: RtcpRelayPlan | undefined,
  stampedSourceName: string | undefined,
): Promise<void> {
  if (relayPlan) {
    try {
      rtcpRelay = await startRtcpRelay(relayPlan, (error) =>
        send({
          type: 'error',
          message: `RTCP relay: ${error.message}`,
          element: undefined,
          debug: undefined,
        }),
      );
    } catch (error) {
      const message = `RTCP relay to ${relayPlan.sfuHost}:${relayPlan.sfuPort}: ${(error as Error).message}`;
      send({ type: 'error', message, element: undefined, debug: undefined }, () => process.exit(3));
      return;
    }
  }
  let created: Pipeline;
  try {
    created = new gstreamer.Pipeline(description);
  } catch (error) {
    // Exit only once the message is on its way: process.send is asynchronous.
    send({ type: 'error', message: (error as Error).message, element: undefined, debug: description }, () =>
      process.exit(3),
    );
    return;
  }
  pipeline = created;
  const current = created;
  if (rtcpRelay) {
    const relay = rtcpRelay;
    const out = current.findChild(RTCP_RELAY.out);
    const into = current.findChild(RTCP_RELAY.in);
    if (!out || !into) {
      const message = `RTCP relay: no ${RTCP_RELAY.out} or ${RTCP_RELAY.in} element in the pipeline`;
      send({ type: 'error', message, element: undefined, debug: description }, () => process.exit(3));
      return;
    }
    // gstreamer-superficial hands a number over as a float; GObject converts it to udpsink's int port.
    out.port = relay.localPort;
    // udpsrc `port=0` binds when the pipeline starts and then reports the port it got.
    relay.deliverTo(() => Number(into.port));
  }
  // Running time 0 is (within the few ms the state change takes) the moment play() is called: the
  // pipeline's base time is taken from its clock as it goes to PLAYING. Segment times are mapped to the
  // box's steady clock (clock.ts: it never steps, unlike the wall clock when chrony first sets it)
  // through it once, in the pipeline's own clock, not by when a message arrives here.
  let playSteadyMs = steadyNow();
  // multifilesink (pipeline.ts preRollLinks) posts one message per file, after closing it, with the
  // running time of the next file's first buffer (the next keyframe): that is this file's end, and the
  // next file's start. The worker's first file has no known start: it is reported without one.
  let fileStartNs: number | undefined;
  current.pollBus((message) => {
    if (
      message.type === 'element' &&
      preRollName !== undefined &&
      message._src_element_name === preRollName
    ) {
      const location = typeof message.filename === 'string' ? message.filename : undefined;
      const ns = runningNs(message['running-time']);
      if (message.name !== 'GstMultiFileSink' || location === undefined || ns === undefined) return;
      const startNs = fileStartNs;
      fileStartNs = ns;
      send({
        type: 'segment',
        location,
        startNs,
        endNs: ns,
        startSteadyMs: startNs === undefined ? undefined : Math.round(playSteadyMs + startNs / 1e6),
        endSteadyMs: Math.round(playSteadyMs + ns / 1e6),
      });
      return;
    }
    if (message.type === 'error') {
      send({
        type: 'error',
        message: typeof message.message === 'string' ? message.message : 'GStreamer error',
        element: message._src_element_name,
        path: typeof message.name === 'string' ? message.name : undefined,
        debug: typeof message.debug === 'string' ? message.debug : undefined,
      });
    } else if (message.type === 'eos') {
      send({ type: 'eos' });
    }
  });
  playSteadyMs = steadyNow();
  current.play();
  if (stampedSourceName !== undefined) stampedSource = startStampedSource(current, stampedSourceName);
  send({ type: 'started' });
  const payloader = current.findChild(payloaderName);
  // Frames and bytes are counted by GStreamer itself (identity after the encoder, ~0.1 µs a buffer);
  // JavaScript reads two counters once a second and never sees a frame.
  const meter = current.findChild(meterName);
  let packets = 0;
  let counted = { frames: 0, bytes: 0 };
  let lastSeqnum: number | undefined;
  statsTimer = setInterval(() => {
    // rtph264pay's `seqnum` is the last sequence number sent (16-bit, wraps): count the steps.
    const seqnum = Number(payloader?.seqnum);
    if (Number.isFinite(seqnum)) {
      if (lastSeqnum !== undefined) packets += (seqnum - lastSeqnum + 0x10000) % 0x10000;
      lastSeqnum = seqnum;
    }
    counted = meterCounters(meter?.['stats']) ?? counted;
    send({ type: 'stats', packets, ...counted, atMs: performance.now() });
  }, STATS_INTERVAL_MS);
}

function stop(code: number): never {
  if (statsTimer) clearInterval(statsTimer);
  stampedSource?.stop();
  rtcpRelay?.stop();
  pipeline?.stop();
  process.exit(code);
}

process.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'run':
      void run(
        message.description,
        message.payloader,
        message.meter,
        message.preroll,
        message.rtcpRelay,
        message.stampedSource,
      );
      break;
    case 'stop':
      stop(0);
      break;
  }
});
// The supervisor owns shutdown: a Ctrl-C in the terminal reaches the whole process group, and this
// process waits for its parent's `stop` instead of dying mid-frame on its own.
process.on('SIGINT', () => {});
// If the supervisor dies (kill -9), the IPC channel closes: do not outlive it.
process.on('disconnect', () => stop(0));
process.on('SIGTERM', () => stop(0));
