// bench:latency's reference sender: the daemon's stamped camera pipeline (the same description,
// rendered by the same cameraChain, and the same StampedSource feeding it) run by a bare Node process
// with gstreamer-superficial — no supervisor, broker, IPC or Janus adapter. What gst-launch-1.0 would
// be, if gst-launch-1.0 could write the stamp. Prints `{"ready":true}` once the pipeline plays.
//
//   node dist/bench/latency/bare-sender.js --port 5004 [--name cam0] [--no-stamp (videotestsrc instead)]
//     [--width 1280 --height 720 --framerate 30 --bitrate 2000]
import { createRequire } from 'node:module';
import { cameraChain } from '../../daemon/src/camera/pipeline.js';
import { renderPipeline } from '../../daemon/src/gst/describe.js';
import { startStampedSource } from '../../daemon/src/camera/stamped-feeder.js';
import { STAMPED_SOURCE_NAME } from '../../daemon/src/camera/stamped-source.js';
import { configSchema } from '../../daemon/src/config/schema.js';

const gstreamer = createRequire(import.meta.url)(
  'gstreamer-superficial',
) as typeof import('gstreamer-superficial');

const stamp = !process.argv.includes('--no-stamp');
const name = process.argv[process.argv.indexOf('--name') + 1] ?? 'bench';

function arg(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

const config = configSchema.parse({
  cameras: [
    {
      // The same name as the daemon's camera gives the same SSRC.
      name: process.argv.includes('--name') ? name : 'bench',
      source: { type: 'test', stamp },
      width: arg('width', 1280),
      height: arg('height', 720),
      framerate: arg('framerate', 30),
      bitrateKbps: arg('bitrate', 2000),
      encoder: 'x264enc',
      rtp: { port: arg('port', 5004) },
    },
  ],
});
const description = renderPipeline(cameraChain(config.cameras[0]!, config.sfu, 'x264enc'));
const pipeline = new gstreamer.Pipeline(description);
pipeline.pollBus((message) => {
  if (message.type === 'error') {
    process.stderr.write(`bare-sender: ${String(message.message)} ${String(message.debug)}\n`);
    process.exit(1);
  }
});
pipeline.play();
const source = startStampedSource(pipeline, STAMPED_SOURCE_NAME);
process.stdout.write(`${JSON.stringify({ ready: true, pipeline: description })}\n`);
const stop = (): void => {
  source?.stop();
  pipeline.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
