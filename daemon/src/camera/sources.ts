// Camera sources as data: which GStreamer elements each `source.type` needs (checked by the probe at
// start, so a Pi-only element missing on this board fails that camera with the package to install),
// and whether a V4L2 device path exists (checked by `outpost check-config` and before every start, so
// an unplugged USB camera retries with backoff and comes back when it is plugged in again).
import { statSync } from 'node:fs';
import type { CameraConfig, Config } from '../config/schema.js';
import type { ConfigProblem } from '../errors.js';
import { OutpostError } from '../errors.js';

export type CameraSource = CameraConfig['source'];

/** Every element a source type may need, probed once at start. */
export const SOURCE_ELEMENTS = [
  'videotestsrc',
  'libcamerasrc',
  'v4l2src',
  'jpegdec',
  'videoconvert',
  'rtspsrc',
  'rtph264depay',
  'h264parse',
] as const;
export type SourceElement = (typeof SOURCE_ELEMENTS)[number];

const WHY_ABSENT: Record<SourceElement, string> = {
  videotestsrc: 'videotestsrc not installed: install gstreamer1.0-plugins-base',
  libcamerasrc:
    'libcamerasrc not installed: install gstreamer1.0-libcamera; this board has no Pi camera stack',
  v4l2src: 'v4l2src not installed: install gstreamer1.0-plugins-good',
  jpegdec: 'jpegdec (for an MJPEG camera) not installed: install gstreamer1.0-plugins-good',
  videoconvert: 'videoconvert not installed: install gstreamer1.0-plugins-base',
  rtspsrc: 'rtspsrc not installed: install gstreamer1.0-plugins-good',
  rtph264depay: 'rtph264depay not installed: install gstreamer1.0-plugins-good',
  h264parse: 'h264parse not installed: install gstreamer1.0-plugins-bad',
};

/** The elements `source` needs, besides the encoder and RTP elements every camera has. */
export function elementsFor(source: CameraSource): SourceElement[] {
  switch (source.type) {
    case 'test':
      return ['videotestsrc'];
    case 'libcamera':
      return ['libcamerasrc'];
    case 'v4l2':
      return source.format === 'mjpeg' ? ['v4l2src', 'jpegdec', 'videoconvert'] : ['v4l2src', 'videoconvert'];
    case 'rtsp':
      return ['rtspsrc', 'rtph264depay', 'h264parse'];
  }
}

/** Throws SOURCE_UNAVAILABLE naming the first missing element and its package. */
export function requireSourceElements(
  source: CameraSource,
  camera: string,
  present: (element: SourceElement) => boolean,
): void {
  const missing = elementsFor(source).find((element) => !present(element));
  if (missing === undefined) return;
  throw new OutpostError(
    'SOURCE_UNAVAILABLE',
    `camera ${camera}: source ${source.type} cannot run here: ${WHY_ABSENT[missing]}`,
    { hint: 'install that package, or give this camera another source.type' },
  );
}

/** Why a V4L2 camera's device cannot be opened as a camera, or undefined when it looks right. */
export function deviceProblem(source: CameraSource): string | undefined {
  if (source.type !== 'v4l2') return undefined;
  let stats;
  try {
    stats = statSync(source.device);
  } catch {
    return `${source.device} does not exist: plug the camera in, or set source.device to a path that \`outpost cameras\` lists (a /dev/v4l/by-id/… path survives replugging)`;
  }
  if (!stats.isCharacterDevice())
    return `${source.device} is not a device: set source.device to a path that \`outpost cameras\` lists`;
  return undefined;
}

/** A device that is missing now, as an error naming the camera (thrown before each start attempt). */
export function checkDevice(source: CameraSource, camera: string): void {
  const problem = deviceProblem(source);
  if (problem !== undefined)
    throw new OutpostError('CAMERA_DEVICE_MISSING', `camera ${camera}: ${problem}`, {
      hint: 'the camera retries with backoff and starts when the device appears',
    });
}

/**
 * What `outpost check-config` adds to the schema's checks: things that depend on this box, not on the
 * file (a device path that is not there). `outpost run` does not refuse to start for these: the other
 * cameras run, and this one retries until its device appears.
 */
export function sourceProblems(config: Config): ConfigProblem[] {
  return config.cameras.flatMap((camera, index) => {
    const problem = deviceProblem(camera.source);
    if (problem === undefined || camera.source.type !== 'v4l2') return [];
    return [
      {
        path: `cameras[${index}].source.device`,
        line: undefined,
        value: camera.source.device,
        message: `camera ${camera.name}: ${problem}`,
      },
    ];
  });
}
