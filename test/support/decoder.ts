// A GStreamer receiver that decodes what a camera sends: `udpsrc` on a loopback port → (srtpdec) →
// rtpjitterbuffer → rtph264depay → avdec_h264 → (a size filter) → checksumsink, which prints a line
// per decoded frame. The camera tests count those frames.
import { spawn, type ChildProcess } from 'node:child_process';

export interface DecodingReceiver {
  /** Frames decoded so far. */
  readonly frames: number;
  readonly child: ChildProcess;
}

/**
 * Start a receiver on `port`. `caps` are udpsrc's caps (`application/x-rtp,…`, or `application/x-srtp,…`
 * with the keys for srtpdec when `srtp` is set). With `size`, a frame of another size fails negotiation.
 * The caller kills `child` when done.
 */
export function decodingReceiver(
  port: number,
  options: { caps: string; srtp?: boolean; size?: { width: number; height: number } },
): DecodingReceiver {
  const child = spawn('gst-launch-1.0', [
    '-q',
    'udpsrc',
    `port=${port}`,
    'address=127.0.0.1',
    `caps=${options.caps}`,
    '!',
    ...(options.srtp ? ['srtpdec', '!'] : []),
    'rtpjitterbuffer',
    'latency=0',
    '!',
    'rtph264depay',
    '!',
    'avdec_h264',
    '!',
    ...(options.size ? [`video/x-raw,width=${options.size.width},height=${options.size.height}`, '!'] : []),
    'checksumsink',
  ]);
  let frames = 0;
  child.stdout.on('data', (chunk: Buffer) => (frames += chunk.toString().split('\n').filter(Boolean).length));
  return {
    get frames() {
      return frames;
    },
    child,
  };
}

/** udpsrc caps for plain H.264 RTP with payload type `payload`. */
export function h264RtpCaps(payload: number): string {
  return `application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=${payload}`;
}
