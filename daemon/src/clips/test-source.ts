// STAND-IN clip source, until the camera pre-roll buffer lands (issue 7's tee/mux half): it records a
// fresh `videotestsrc` for preMs + postMs from the moment of the press, one H.264 track per camera
// (x264enc, a keyframe every second, as the cameras send), muxed by mp4mux with faststart. It cannot
// show what happened before the press, and it encodes a second stream on the box; the real source will
// mux the cameras' own encoded buffers instead. The interface (source.ts) is what stays.
//
// `gst-launch-1.0 -e` turns SIGINT into end-of-stream, so a stop mid-clip still finishes a valid MP4.
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { CameraConfig } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import type { CapturedClip, ClipRequest, ClipSource } from './source.js';

type CameraShape = Pick<CameraConfig, 'name' | 'width' | 'height' | 'framerate'>;

const PATTERNS = ['ball', 'smpte', 'snow', 'gradient'];

/** gst-launch arguments for the stand-in recording (one token per argument; the path is quoted). */
export function testClipArgs(cameras: readonly CameraShape[], seconds: number, outPath: string): string[] {
  if (/["\\\n]/.test(outPath)) throw new Error(`clip path ${outPath} has a character gst-launch cannot take`);
  const args = ['-e', '-q'];
  cameras.forEach((camera, index) => {
    const buffers = Math.max(1, Math.round(seconds * camera.framerate));
    args.push(
      'videotestsrc', 'is-live=true', `pattern=${PATTERNS[index % PATTERNS.length]}`, `num-buffers=${buffers}`,
      '!', `video/x-raw,width=${camera.width},height=${camera.height},framerate=${camera.framerate}/1`,
      '!', 'x264enc', 'tune=zerolatency', 'speed-preset=ultrafast', `key-int-max=${camera.framerate}`, 'bitrate=1000',
      '!', 'h264parse', '!', 'mux.',
    ); // prettier-ignore
  });
  args.push('mp4mux', 'name=mux', 'faststart=true', '!', 'filesink', `location="${outPath}"`);
  return args;
}

export class TestClipSource implements ClipSource {
  constructor(
    private readonly cameras: readonly CameraShape[],
    private readonly log: Logger,
  ) {}

  capture(request: ClipRequest): Promise<CapturedClip> {
    const known = this.cameras.filter((camera) => request.cameras.includes(camera.name));
    const cameras: CameraShape[] =
      known.length > 0 ? known : [{ name: 'test', width: 320, height: 240, framerate: 15 }];
    const seconds = (request.preMs + request.postMs) / 1000;
    const args = testClipArgs(cameras, seconds, request.outPath);
    const began = Date.now();
    this.log.info(
      { clipId: request.clipId, seconds, cameras: cameras.map((c) => c.name) },
      'recording stand-in clip',
    );
    return new Promise((resolve, reject) => {
      const child = spawn('gst-launch-1.0', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const onAbort = () => child.kill('SIGINT');
      request.signal.addEventListener('abort', onAbort, { once: true });
      child.on('error', (error) => {
        request.signal.removeEventListener('abort', onAbort);
        reject(
          new OutpostError('CLIP_CAPTURE_FAILED', `gst-launch-1.0 did not start: ${error.message}`, {
            hint: 'install gstreamer1.0-tools and the plugins (npm run setup)',
          }),
        );
      });
      child.on('exit', (code, signal) => {
        request.signal.removeEventListener('abort', onAbort);
        const ended = Date.now();
        if (code === 0) {
          resolve({
            path: request.outPath,
            durationMs: Math.min(seconds * 1000, ended - began),
            startAt: began,
            endAt: ended,
          });
        } else {
          reject(
            new OutpostError(
              'CLIP_CAPTURE_FAILED',
              `stand-in clip recording failed (${code ?? signal}): ${stderr.trim().slice(0, 300)}`,
            ),
          );
        }
      });
    });
  }
}
