// The clip source: a clip is each requested camera's pre-roll (preroll.ts) from the keyframe at or before
// press − preRoll, through press + postRoll, muxed into one MP4 (one H.264 track per camera, faststart)
// without decoding or re-encoding: MPEG-TS segments → tsdemux → h264parse → mp4mux → the clip store's
// temp path (the store fsyncs and renames it). The mux runs as a pipeline in a worker process of its
// own (gst/jobs.ts), so a native crash or a leak stays out of the daemon.
//
// Where the clip starts and ends: the start cannot be cut inside a GOP without re-encoding, so each
// camera's track starts at its keyframe at or before press − pre (up to one keyframe interval early);
// the end can be cut at any frame (constrained baseline has no B-frames), so each track stops after
// the frames up to press + post (identity eos-after). Each track starts at 0 in the file: mp4mux
// writes no empty edit for a later start, and no stock element shifts timestamps, so two cameras'
// tracks can be up to one keyframe interval apart; the log line gives each camera's pre-roll.
import type { Logger } from 'pino';
import { caps, element, pad, renderPipeline, type Link } from '../gst/describe.js';
import { runPipelineToEnd } from '../gst/jobs.js';
import { steadyToWall, wallToSteady } from '../clock.js';
import { OutpostError } from '../errors.js';
import type { PreRoll, PreRollPick, PreRollRing } from './preroll.js';
import type { CapturedClip, ClipRequest, ClipSource } from './source.js';

/** One camera's part of a clip. */
export interface ClipTrack {
  /** The segments' printf pattern (`…/3-%08d.ts`) and the index range, consecutive. */
  location: string;
  startIndex: number;
  stopIndex: number;
  /** Stop after this many frames (undefined: at the last segment's end). */
  frames: number | undefined;
}

/** How long the mux may take: seconds of video are muxed in milliseconds; this bounds a wedged one. */
const MUX_TIMEOUT_MS = 30_000;

/** The mux pipeline for a clip: one H.264 track per camera into one faststart MP4 at `outPath`. */
export function clipMuxGraph(tracks: readonly ClipTrack[], outPath: string): Link[][] {
  return [
    // faststart: the index (moov) goes first, so a player starts before the whole file has arrived.
    [element('mp4mux', { faststart: true }, 'mux'), element('filesink', { location: outPath })],
    ...tracks.map((track, index): Link[] => [
      // Each segment file is one buffer; concatenated MPEG-TS is MPEG-TS (every segment starts with
      // PAT/PMT and a keyframe with SPS/PPS), and its timestamps run on across segments.
      element('multifilesrc', {
        location: track.location,
        'start-index': track.startIndex,
        'stop-index': track.stopIndex,
        caps: 'video/mpegts,systemstream=(boolean)true,packetsize=(int)188',
      }),
      element('tsdemux'),
      // Cut before h264parse: h264parse holds one frame back, and cutting after it (answering its push
      // with EOS) loses the frame before the last one. tsdemux hands out whole access units.
      element('identity', { 'eos-after': track.frames }),
      element('h264parse'),
      caps('video/x-h264', { 'stream-format': 'avc', alignment: 'au' }),
      pad('mux', `video_${index}`),
    ]),
  ];
}

/** The ClipSource the daemon uses: the cameras' own H.264 from their pre-roll, muxed. */
export class PreRollClipSource implements ClipSource {
  constructor(
    private readonly preroll: Pick<PreRoll, 'ring'>,
    private readonly log: Logger,
  ) {}

  async capture(request: ClipRequest): Promise<CapturedClip> {
    // The rings' times are on the steady clock: a wall-clock step since the cameras started (chrony
    // setting the clock after boot) must not put every segment outside the clip's window.
    const pressedAt = wallToSteady(request.at);
    const from = pressedAt - request.preMs;
    const to = pressedAt + request.postMs;
    const rings = request.cameras
      .map((name) => this.preroll.ring(name))
      .filter((ring): ring is PreRollRing => ring !== undefined);
    if (rings.length === 0)
      throw new OutpostError(
        'CLIP_CAPTURE_FAILED',
        `no camera to record: the clip asks for ${request.cameras.join(', ') || 'no camera'}, and this box has ${request.cameras.length === 0 ? 'none configured' : 'none of them'}`,
        { hint: 'configure a camera under `cameras`, or name configured ones in clips.cameras' },
      );
    const pins = rings.map((ring) => ring.pin(from));
    try {
      // The post-roll: wait until each camera has finished the segment holding press + post. The file
      // sink closes a GOP's file when the next keyframe reaches it, so that is up to one keyframe interval
      // after it; a camera that is not streaming does not hold the clip up for much longer than that.
      await Promise.all(
        rings.map((ring) => ring.waitFor(to, to + ring.segmentSeconds * 3000 + 5000, request.signal)),
      );
      const picked: { ring: PreRollRing; pick: PreRollPick }[] = [];
      for (const ring of rings) {
        const pick = ring.pick(from, to);
        if (pick) picked.push({ ring, pick });
      }
      const missing = rings.filter((ring) => !picked.some((p) => p.ring === ring)).map((ring) => ring.camera);
      const cameras = picked.map((p) => p.ring.camera);
      if (picked.length === 0)
        throw new OutpostError(
          'CLIP_CAPTURE_FAILED',
          `no video for clip ${request.clipId}: camera(s) ${rings.map((r) => r.camera).join(', ')} had nothing recorded around the press`,
          {
            hint: 'check the cameras are streaming (`outpost status`); a camera that is not streaming has no pre-roll',
          },
        );
      if (missing.length > 0)
        this.log.warn(
          { clipId: request.clipId, cameras, missing },
          'clip made without camera(s) that had no video around the press',
        );
      const startAt = Math.min(...picked.map((p) => p.pick.startAt));
      const endAt = Math.max(...picked.map((p) => p.pick.endAt));
      const tracks = picked.map(({ ring, pick }): ClipTrack => {
        const first = pick.segments[0]!;
        const last = pick.segments.at(-1)!;
        return {
          location: first.path.replace(/-\d+\.ts$/, '-%08d.ts'),
          startIndex: first.index,
          stopIndex: last.index,
          frames:
            last.endAt > pick.endAt
              ? Math.max(1, Math.round(((pick.endAt - pick.startAt) / 1000) * ring.framerate))
              : undefined,
        };
      });
      const error = await runPipelineToEnd(
        renderPipeline(clipMuxGraph(tracks, request.outPath)),
        MUX_TIMEOUT_MS,
      );
      if (error !== undefined)
        throw new OutpostError('CLIP_CAPTURE_FAILED', `clip ${request.clipId} could not be muxed: ${error}`, {
          hint: 'install the GStreamer plugins for tsdemux, h264parse and mp4mux (npm run setup)',
        });
      this.log.info(
        {
          clipId: request.clipId,
          cameras,
          missing,
          preRollMs: Object.fromEntries(picked.map((p) => [p.ring.camera, pressedAt - p.pick.startAt])),
          postRollMs: endAt - pressedAt,
          segments: picked.map((p) => p.pick.segments.length),
        },
        'clip muxed from the pre-roll',
      );
      return {
        path: request.outPath,
        durationMs: endAt - startAt,
        startAt: steadyToWall(startAt),
        endAt: steadyToWall(endAt),
        cameras,
      };
    } finally {
      for (const pin of pins) pin.release();
    }
  }
}
