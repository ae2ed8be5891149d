// Child-process entry for one camera: runs one GStreamer pipeline through gstreamer-superficial and
// reports to its supervisor over IPC. One process per camera because gstreamer-superficial leaks
// ~1.7 MB per Pipeline and pins a libuv thread per pollBus: a restart is a new process, so nothing
// leaks across restarts, and a crash in native code takes down one camera, not the daemon.
import { createRequire } from 'node:module';
import type { Pipeline } from 'gstreamer-superficial';
import type { FromWorker, ToWorker } from './worker-protocol.js';

// The package's entry point is the .node addon itself, which only require() can load.
const gstreamer = createRequire(import.meta.url)(
  'gstreamer-superficial',
) as typeof import('gstreamer-superficial');

const STATS_INTERVAL_MS = 1000;

function send(message: FromWorker): void {
  process.send?.(message);
}

let pipeline: Pipeline | undefined;
let statsTimer: NodeJS.Timeout | undefined;

function run(description: string, payloaderName: string): void {
  try {
    pipeline = new gstreamer.Pipeline(description);
  } catch (error) {
    send({ type: 'error', message: (error as Error).message, element: undefined, debug: description });
    process.exit(3);
  }
  const current = pipeline;
  current.pollBus((message) => {
    if (message.type === 'error') {
      send({
        type: 'error',
        message: typeof message.message === 'string' ? message.message : 'GStreamer error',
        element: message._src_element_name,
        debug: typeof message.debug === 'string' ? message.debug : undefined,
      });
    } else if (message.type === 'eos') {
      send({ type: 'eos' });
    }
  });
  current.play();
  send({ type: 'started' });
  const payloader = current.findChild(payloaderName);
  let packets = 0;
  let lastSeqnum: number | undefined;
  statsTimer = setInterval(() => {
    // rtph264pay's `seqnum` is the last sequence number sent (16-bit, wraps): count the steps.
    const seqnum = Number(payloader?.seqnum);
    if (Number.isFinite(seqnum)) {
      if (lastSeqnum !== undefined) packets += (seqnum - lastSeqnum + 0x10000) % 0x10000;
      lastSeqnum = seqnum;
    }
    send({ type: 'stats', packets });
  }, STATS_INTERVAL_MS);
}

function stop(code: number): never {
  if (statsTimer) clearInterval(statsTimer);
  pipeline?.stop();
  process.exit(code);
}

process.on('message', (message: ToWorker) => {
  if (message.type === 'run') run(message.description, message.payloader);
  else stop(0);
});
// The supervisor owns shutdown: a Ctrl-C in the terminal reaches the whole process group, and this
// process waits for its parent's `stop` instead of dying mid-frame on its own.
process.on('SIGINT', () => {});
// If the supervisor dies (kill -9), the IPC channel closes: do not outlive it.
process.on('disconnect', () => stop(0));
process.on('SIGTERM', () => stop(0));
