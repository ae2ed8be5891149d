// bench:latency's non-browser floor: a GStreamer receiver in its own process. RTP/H.264 from a UDP port
// → rtpjitterbuffer latency=0 → depay → avdec_h264 → appsink; each decoded frame's stamp is read and
// one line is printed per frame: `{"timeMs":…,"counter":…,"at":…}` (`at` = this host's clock when the
// frame reached JavaScript). Prints `{"ready":true}` once the pipeline plays.
//
//   node dist/bench/latency/gst-receiver.js --port 5006 --payload-type 96
import { createRequire } from 'node:module';
import { readStamp } from '../../daemon/src/camera/stamp.js';

const gstreamer = createRequire(import.meta.url)(
  'gstreamer-superficial',
) as typeof import('gstreamer-superficial');

function arg(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

const port = arg('port', 5006);
const payloadType = arg('payload-type', 96);

const pipeline = new gstreamer.Pipeline(
  `udpsrc address=127.0.0.1 port=${port} buffer-size=4194304 ` +
    `caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=${payloadType}" ` +
    '! rtpjitterbuffer latency=0 ! rtph264depay ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ' +
    '! appsink name=sink sync=false max-buffers=4 drop=false',
);
const sink = pipeline.findChild('sink') as {
  pull(callback: (buffer: Buffer | null, caps: Record<string, unknown>) => void): void;
};
let width = 0;
let height = 0;

function onSample(buffer: Buffer | null, caps: Record<string, unknown>): void {
  const at = Date.now();
  if (typeof caps.width === 'number') width = caps.width;
  if (typeof caps.height === 'number') height = caps.height;
  if (!buffer) return; // end of stream
  const stamp = width > 0 ? readStamp({ data: buffer, width, height, format: 'I420' }) : undefined;
  process.stdout.write(`${JSON.stringify(stamp ? { ...stamp, at } : { unreadable: true, at })}\n`);
  sink.pull(onSample);
}

pipeline.pollBus((message) => {
  if (message.type === 'error') {
    process.stderr.write(`gst-receiver: ${String(message.message)} ${String(message.debug)}\n`);
    process.exit(1);
  }
});
pipeline.play();
sink.pull(onSample);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on('SIGTERM', () => {
  pipeline.stop();
  process.exit(0);
});
process.on('SIGINT', () => {
  pipeline.stop();
  process.exit(0);
});
