// The stamped test source (`source: { type: test, stamp: true }`), for measuring glass-to-glass latency
// (bench:latency): its capture links, an `appsrc` in place of `videotestsrc`. The camera worker feeds
// that appsrc with frames that carry their capture time (stamped-feeder.ts); this side only describes
// it, for the main process. Production sources never carry it: the schema allows `stamp` only on the
// `test` source.
import type { CameraConfig } from '../config/schema.js';
import { element, type Link } from '../gst/describe.js';

/** The appsrc's name in the pipeline: the worker is told it, to know which element to feed. */
export const STAMPED_SOURCE_NAME = 'stampsrc';

/** Whether this camera's capture is the stamped appsrc. */
export function isStamped(camera: CameraConfig): boolean {
  return camera.source.type === 'test' && camera.source.stamp;
}

/** The capture links of a stamped test camera: appsrc (I420 at the camera's size and rate). */
export function stampedSourceLinks(camera: CameraConfig, format: 'NV12' | 'I420'): Link[] {
  const raw = `video/x-raw,format=I420,width=${camera.width},height=${camera.height},framerate=${camera.framerate}/1`;
  return [
    element(
      'appsrc',
      {
        'is-live': true,
        // Buffers are stamped with the pipeline's running time when pushed: the stamp's moment.
        'do-timestamp': true,
        format: 'time',
        caps: raw,
      },
      STAMPED_SOURCE_NAME,
    ),
    // The Pi encoder takes NV12 only (the caps after the source say so); the software encoders take I420.
    ...(format === 'NV12' ? [element('videoconvert')] : []),
  ];
}
