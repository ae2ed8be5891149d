// Cameras for the camera tests: the real supervisor and worker with short timings, and a camera in
// sfu.mode janus beside its JanusMountpoints, built the way app.ts builds them.
import type { Logger } from 'pino';
import { Camera, type CameraTimings, type EncoderChooser } from '../../daemon/src/camera/camera.js';
import { JanusMountpoints, type JanusTimings } from '../../daemon/src/camera/janus.js';
import type { Config } from '../../daemon/src/config/schema.js';

/**
 * Short backoff, so a failing camera's restarts are seen in seconds. The stall bound is 8 s, not the
 * daemon's 5 s: with the whole suite on 2 cores a worker can wait seconds for a core, and a stall
 * restart there made the Janus tests wait for packets that a new worker had not sent yet.
 */
export const FAST_CAMERA: CameraTimings = {
  stallMs: 8000,
  backoffMinMs: 200,
  backoffMaxMs: 1000,
  exitGraceMs: 1000,
};
/** Janus rounds every 250 ms instead of 5 s. */
export const FAST_JANUS: JanusTimings = {
  checkMs: 250,
  requestTimeoutMs: 1000,
  backoffMinMs: 200,
  backoffMaxMs: 1000,
};

/**
 * The first camera of `camera` (a parsed config) on the mountpoints of `janus` (the same config unless
 * the test puts a relay between them), not started. Stopping both (camera first) goes on `cleanups`.
 */
export function cameraOnJanus(deps: {
  janus: Config;
  camera?: Config;
  encoders: EncoderChooser;
  log: Logger;
  janusTimings?: JanusTimings;
  janusLog?: Logger;
  cleanups: Array<() => Promise<void>>;
}): { camera: Camera; mountpoints: JanusMountpoints } {
  const config = deps.camera ?? deps.janus;
  const mountpoints = new JanusMountpoints(
    deps.janus,
    deps.janusLog ?? deps.log,
    deps.janusTimings ?? FAST_JANUS,
  );
  const camera = new Camera({
    camera: config.cameras[0]!,
    sfu: config.sfu,
    encoders: deps.encoders,
    log: deps.log,
    timings: FAST_CAMERA,
    mountpoint: mountpoints.mountpoint(config.cameras[0]!.name),
  });
  deps.cleanups.push(() => mountpoints.stop());
  deps.cleanups.push(() => camera.stop());
  return { camera, mountpoints };
}
