// Which H.264 encoder each camera uses, decided by probing GStreamer's registry once at start (in a
// worker process) rather than by guessing the board: the Pi 3/4/Zero 2/CM4 hardware encoder
// (v4l2h264enc) first, tried with a short trial run because it can be registered yet unusable; then
// x264enc; then openh264enc. A Pi 5 has no hardware encoder and falls back without drama.
import type { Logger } from 'pino';
import { OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { caps, element, renderPipeline } from '../gst/describe.js';
import { probeRegistry, type ProbeCandidate } from '../gst/jobs.js';
import { requireSourceElements, SOURCE_ELEMENTS, type CameraSource, type SourceElement } from './sources.js';

/** In order of preference. */
export const ENCODERS = ['v4l2h264enc', 'x264enc', 'openh264enc'] as const;
export type EncoderName = (typeof ENCODERS)[number];
export type EncoderChoice = 'auto' | EncoderName;

const WHY_ABSENT: Record<EncoderName, string> = {
  v4l2h264enc:
    'no hardware H.264 encoder: it needs a Raspberry Pi 3/4/Zero 2/CM4 with the bcm2835-codec driver (a Pi 5 has none)',
  x264enc: 'x264enc is missing: install gstreamer1.0-plugins-ugly',
  openh264enc: 'openh264enc is missing: install gstreamer1.0-plugins-bad',
};

const TRIAL_TIMEOUT_MS = 5000;
const PROBE_TIMEOUT_MS = 15_000;

/** A 10-frame VGA encode to fakesink: what the Pi's driver must accept before we rely on it. */
function hardwareTrial(): string {
  return renderPipeline([
    element('videotestsrc', { 'num-buffers': 10 }),
    caps('video/x-raw', { format: 'NV12', width: 640, height: 480, framerate: { num: 30, den: 1 } }),
    element('v4l2h264enc', { 'extra-controls': 'controls,repeat_sequence_header=1' }),
    // The driver refuses to start unless level fits resolution and rate: VGA@30 needs at least 3.
    caps('video/x-h264', { level: '3' }),
    element('fakesink'),
  ]);
}

export interface EncoderStatus {
  factory: EncoderName;
  usable: boolean;
  reason: string | undefined;
}

export class Encoders implements Service {
  readonly name = 'encoders';
  private statuses: EncoderStatus[] | undefined;
  /** Source elements (libcamerasrc, v4l2src, rtspsrc…) found in the registry by the same probe. */
  private sourceElements = new Set<string>();

  constructor(private readonly log: Logger) {}

  async start(): Promise<void> {
    const results = await probeRegistry(probeCandidates(), TRIAL_TIMEOUT_MS, PROBE_TIMEOUT_MS);
    this.sourceElements = new Set(
      results
        .filter((r) => r.present && (SOURCE_ELEMENTS as readonly string[]).includes(r.factory))
        .map((r) => r.factory),
    );
    this.statuses = ENCODERS.map((factory) => {
      const result = results.find((r) => r.factory === factory);
      if (!result?.present) return { factory, usable: false, reason: WHY_ABSENT[factory] };
      if (result.trialOk === false) {
        return {
          factory,
          usable: false,
          reason: `present but its trial run failed: ${result.error ?? 'unknown'}`,
        };
      }
      return { factory, usable: true, reason: undefined };
    });
    const usable = this.statuses.filter((s) => s.usable).map((s) => s.factory);
    const unusable = Object.fromEntries(
      this.statuses.filter((s) => !s.usable).map((s) => [s.factory, s.reason]),
    );
    if (usable.length === 0) {
      throw new OutpostError('START_FAILED', 'no usable H.264 encoder in GStreamer', {
        hint: 'install gstreamer1.0-plugins-ugly (x264enc) or gstreamer1.0-plugins-bad (openh264enc)',
      });
    }
    this.log.info(
      {
        usable,
        unusable,
        preferred: usable[0],
        sourceElements: [...this.sourceElements],
      },
      'h264 encoders probed',
    );
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  healthy(): boolean {
    return this.statuses !== undefined;
  }

  /** What the probe found, for status and `outpost cameras`. */
  report(): readonly EncoderStatus[] {
    return this.statuses ?? [];
  }

  /** Throws SOURCE_UNAVAILABLE when an element the camera's source needs is not installed here. */
  requireSource(source: CameraSource, camera: string): void {
    if (!this.statuses) throw new Error('encoders.requireSource() before start()');
    requireSourceElements(source, camera, (element: SourceElement) => this.sourceElements.has(element));
  }

  /** The encoder a camera gets. Throws ENCODER_UNAVAILABLE when a forced one cannot be used. */
  choose(requested: EncoderChoice, camera: string): EncoderName {
    const statuses = this.statuses;
    if (!statuses) throw new Error('encoders.choose() before start()');
    if (requested === 'auto') {
      const best = statuses.find((s) => s.usable);
      if (best) return best.factory;
    } else {
      const status = statuses.find((s) => s.factory === requested);
      if (status?.usable) return requested;
      throw new OutpostError(
        'ENCODER_UNAVAILABLE',
        `camera ${camera}: encoder ${requested} is forced by its config but cannot be used here: ${status?.reason ?? 'unknown'}`,
        { hint: 'set the camera\'s encoder to "auto" (or remove it) to use the best one this box has' },
      );
    }
    throw new OutpostError('ENCODER_UNAVAILABLE', `camera ${camera}: no usable H.264 encoder`, {
      hint: 'install gstreamer1.0-plugins-ugly',
    });
  }
}

/** The probe's candidates: every encoder (the Pi's with a trial run) and every source element. */
function probeCandidates(): ProbeCandidate[] {
  return [
    ...ENCODERS.map((factory) => ({
      factory,
      parse: undefined,
      trial: factory === 'v4l2h264enc' ? hardwareTrial() : undefined,
    })),
    ...SOURCE_ELEMENTS.map((factory) => ({
      factory,
      // A source has no sink pad: `fakesrc ! libcamerasrc` would not parse even where it exists. The
      // extra chain keeps the parse result a pipeline (a lone element would be returned bare).
      parse: factory.endsWith('src') ? `fakesrc num-buffers=0 ! fakesink ${factory} ! fakesink` : undefined,
      trial: undefined,
    })),
  ];
}
