// The camera pre-roll: per camera, the last `clips.preRollSeconds` of the camera's own encoded H.264,
// kept as keyframe-aligned MPEG-TS segments that the camera pipeline's pre-roll branch writes
// (camera/pipeline.ts: tee → leaky queue → h264parse → mpegtsmux → multifilesink) into a folder on
// tmpfs. This module owns those folders: it hears of each finished segment through the camera's
// PreRollHook, deletes the segments older than the pre-roll (so memory does not grow with uptime), and
// keeps the ones a clip still needs (pins) until the clip is muxed. No frame passes through
// JavaScript: one message and one stat per segment (a GOP), one unlink per pruned segment.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmdirSync, rmSync, statfsSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { PreRollHook } from '../camera/camera.js';
import type { CameraConfig, Config } from '../config/schema.js';
import { steadyNow } from '../clock.js';
import type { Service } from '../lifecycle/service.js';

export interface PreRollSegment {
  path: string;
  /** Which worker of the camera wrote it (segments of two workers do not join). */
  launch: number;
  index: number;
  /**
   * Steady-clock time (clock.ts) of its first frame (a keyframe) and of the next segment's first frame:
   * a wall-clock step (chrony setting a Pi's clock after boot) does not move them.
   */
  startAt: number;
  endAt: number;
  bytes: number;
}

/** The segments of one camera that cover a clip's window: one worker's, consecutive, oldest first. */
export interface PreRollPick {
  segments: PreRollSegment[];
  /** The first segment's start: the keyframe at or before the window's start (when the ring reaches back that far). */
  startAt: number;
  /** The window's end, or the last segment's end when the video stops before it. */
  endAt: number;
}

/** `{launch}-{index}.ts`, as the pattern from `launch()` names them. */
const SEGMENT_NAME = /^(\d+)-(\d+)\.ts$/;
/** A complete segment is whole MPEG-TS packets. */
const TS_PACKET_BYTES = 188;
/** statfs f_type of tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

export interface PreRollRingDeps {
  camera: string;
  dir: string;
  /** How much video to keep behind the newest segment: the pre-roll plus one segment of margin. */
  keepMs: number;
  segmentSeconds: number;
  /** The camera's frame rate: a clip's post-roll is cut after this many frames a second. */
  framerate: number;
  log: Logger;
}

/** One camera's pre-roll folder. */
export class PreRollRing implements PreRollHook {
  private segments: PreRollSegment[] = [];
  private launchCount = 0;
  /** When the last segment was reported (steady clock). */
  private lastSegmentAt = 0;
  /** Clips being captured: nothing ending after a pin's `from` is deleted while it is held. */
  private readonly pins = new Set<{ from: number }>();
  private readonly waiters = new Set<() => void>();

  readonly camera: string;
  readonly dir: string;
  readonly segmentSeconds: number;
  readonly framerate: number;

  constructor(private readonly deps: PreRollRingDeps) {
    this.camera = deps.camera;
    this.dir = deps.dir;
    this.segmentSeconds = deps.segmentSeconds;
    this.framerate = deps.framerate;
  }

  launch(): string {
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    this.launchCount += 1;
    this.prune();
    this.deleteUntracked();
    return join(this.dir, `${this.launchCount}-%08d.ts`);
  }

  segment(report: { path: string; startAt: number | undefined; endAt: number }): void {
    const match = SEGMENT_NAME.exec(basename(report.path));
    if (!match || resolve(report.path) !== join(resolve(this.dir), basename(report.path))) {
      this.deps.log.warn({ path: report.path }, 'pre-roll segment outside the pre-roll folder; ignored');
      return;
    }
    this.lastSegmentAt = steadyNow();
    if (report.startAt === undefined) {
      // A worker's first file: when it began is unknown (and it may not start at a keyframe), so no
      // clip may use it. It is deleted at once.
      this.delete(report.path);
      return;
    }
    const bytes = statSync(report.path, { throwIfNoEntry: false })?.size;
    if (bytes === undefined || bytes === 0) {
      this.deps.log.error(
        { path: report.path, bytes: bytes ?? null },
        'pre-roll segment missing or empty: is the pre-roll folder (clips.preRollDir) full? It is not used for clips',
      );
      this.delete(report.path);
      return;
    }
    if (bytes % TS_PACKET_BYTES !== 0) {
      // multifilesink does not check fclose: when the folder is full, the last stdio flush of a file can
      // fail unseen, and the file would cut a clip short without a word. stdio writes whole 4 KiB blocks
      // before that flush, so such a file almost always ends mid-packet (a complete one is whole 188-byte
      // packets); only a cut at a multiple of 47 blocks (188 KiB) would pass.
      this.deps.log.error(
        { path: report.path, bytes },
        'pre-roll segment cut short (not whole MPEG-TS packets): is the pre-roll folder (clips.preRollDir) full? It is not used for clips',
      );
      this.delete(report.path);
      return;
    }
    this.segments.push({
      path: report.path,
      launch: Number(match[1]),
      index: Number(match[2]),
      startAt: report.startAt,
      endAt: report.endAt,
      bytes,
    });
    this.prune();
    for (const wake of [...this.waiters]) wake();
  }

  /** Bytes of segment files kept now (the open segment, still being written, is not counted). */
  bytes(): number {
    return this.segments.reduce((sum, segment) => sum + segment.bytes, 0);
  }

  files(): number {
    return this.segments.length;
  }

  /** The newest finished segment's end, or undefined before the first. */
  newestEnd(): number | undefined {
    return this.segments.at(-1)?.endAt;
  }

  /** Keep every segment that ends after `from` until released (a clip's pre-roll during its post-roll). */
  pin(from: number): { release(): void } {
    const pin = { from };
    this.pins.add(pin);
    return {
      release: () => {
        this.pins.delete(pin);
        this.prune();
      },
    };
  }

  /**
   * Resolves once a finished segment of the current worker ends at or after `until`; or when no segment
   * came for three segment lengths and a second, counted from the call at the earliest (a segment is
   * reported as soon as the next keyframe reaches the branch's file sink, tens of ms after its end, so a
   * streaming camera is never that late: this one has stopped, or is not streaming yet); or at
   * `deadline`; or when `signal` aborts. Never rejects. `until` and `deadline` are steady-clock times.
   */
  waitFor(until: number, deadline: number, signal: AbortSignal): Promise<void> {
    const calledAt = steadyNow();
    return new Promise((done) => {
      const check = (): void => {
        const newest = this.segments.at(-1);
        const reached = newest !== undefined && newest.launch === this.launchCount && newest.endAt >= until;
        const heard = Math.max(calledAt, this.lastSegmentAt);
        const now = steadyNow();
        const stalled = now - heard > 3 * this.segmentSeconds * 1000 + 1000;
        if (reached || stalled || signal.aborted || now >= deadline) finish();
      };
      const finish = (): void => {
        clearInterval(timer);
        this.waiters.delete(check);
        signal.removeEventListener('abort', check);
        done();
      };
      const timer = setInterval(check, 250);
      this.waiters.add(check);
      signal.addEventListener('abort', check);
      check();
    });
  }

  /**
   * The segments covering [from, to]: the one holding `from` (so the clip starts at the keyframe at or
   * before it) through the one holding `to`. Only one worker's consecutive segments are joined (a
   * restart breaks the timestamps): the run that covers most of the window wins.
   */
  pick(from: number, to: number): PreRollPick | undefined {
    const overlapping = this.segments.filter((segment) => segment.endAt > from && segment.startAt < to);
    const runs: PreRollSegment[][] = [];
    for (const segment of overlapping) {
      const run = runs.at(-1);
      const last = run?.at(-1);
      if (run && last && last.launch === segment.launch && last.index + 1 === segment.index)
        run.push(segment);
      else runs.push([segment]);
    }
    const covered = (run: PreRollSegment[]): number =>
      Math.min(to, run.at(-1)?.endAt ?? 0) - Math.max(from, run[0]?.startAt ?? 0);
    const best = runs.reduce<PreRollSegment[] | undefined>(
      (chosen, run) => (chosen === undefined || covered(run) > covered(chosen) ? run : chosen),
      undefined,
    );
    const first = best?.[0];
    const last = best?.at(-1);
    if (!best || !first || !last) return undefined;
    return { segments: best, startAt: first.startAt, endAt: Math.min(to, last.endAt) };
  }

  /**
   * Forget and delete every segment file in the folder, then the folder if that left it empty (the
   * daemon starts or stops). Only files named like segments are touched: `clips.preRollDir` may point
   * at a folder that holds other things.
   */
  clear(): void {
    this.segments = [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return; // not there: nothing to clear
    }
    for (const name of names) if (SEGMENT_NAME.test(name)) rmSync(join(this.dir, name), { force: true });
    removeIfEmpty(this.dir);
  }

  /**
   * Delete the segments behind the pre-roll, and those of an earlier worker, unless a clip holds them.
   * The folder then holds at most keepMs of video plus one segment (and what clips being captured pin).
   */
  private prune(): void {
    const newest = this.segments.at(-1)?.endAt ?? 0;
    const pinnedFrom = Math.min(...[...this.pins].map((pin) => pin.from));
    const keep = (segment: PreRollSegment): boolean =>
      segment.endAt > pinnedFrom ||
      (segment.launch === this.launchCount && segment.endAt >= newest - this.deps.keepMs);
    const gone = this.segments.filter((segment) => !keep(segment));
    if (gone.length === 0) return;
    this.segments = this.segments.filter(keep);
    for (const segment of gone) this.delete(segment.path);
  }

  /**
   * Delete the files of earlier workers that the ring does not hold: a stopped worker's last file is
   * closed without a report (the pipeline goes to NULL), and a restart every so often would otherwise
   * leave one behind each time until `/run` is full.
   */
  private deleteUntracked(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const tracked = new Set(this.segments.map((segment) => basename(segment.path)));
    for (const name of names) {
      const match = SEGMENT_NAME.exec(name);
      if (match && Number(match[1]) < this.launchCount && !tracked.has(name))
        this.delete(join(this.dir, name));
    }
  }

  private delete(path: string): void {
    rm(path, { force: true }).catch((error: unknown) =>
      this.deps.log.warn({ err: error, path }, 'could not delete a pre-roll segment'),
    );
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Not empty (something else lives there) or already gone: leave it.
  }
}

/**
 * Where the pre-roll folders live: `clips.preRollDir`, else systemd's RuntimeDirectory (a tmpfs under
 * /run), else a folder in the system temp dir named after the data dir (two daemons never share one).
 */
export function preRollRoot(config: Pick<Config, 'dataDir' | 'clips'>): string {
  if (config.clips.preRollDir) return config.clips.preRollDir;
  const runtime = process.env.RUNTIME_DIRECTORY?.split(':')[0];
  if (runtime) return join(runtime, 'preroll');
  const tag = createHash('sha256').update(resolve(config.dataDir)).digest('hex').slice(0, 12);
  return join(tmpdir(), `outpost-preroll-${tag}`);
}

/** The pre-roll of every camera: one ring each, the root folder created at start and removed at stop. */
export class PreRoll implements Service {
  readonly name = 'preroll';
  private readonly rings = new Map<string, PreRollRing>();

  constructor(
    cameras: readonly Pick<CameraConfig, 'name' | 'keyframeIntervalSeconds' | 'framerate'>[],
    private readonly settings: { root: string; preRollSeconds: number },
    private readonly log: Logger,
  ) {
    for (const camera of cameras) {
      // One segment per GOP; the margin of one segment keeps the keyframe at or before press − pre.
      const segmentSeconds = camera.keyframeIntervalSeconds;
      this.rings.set(
        camera.name,
        new PreRollRing({
          camera: camera.name,
          dir: join(settings.root, camera.name),
          keepMs: (settings.preRollSeconds + segmentSeconds) * 1000,
          segmentSeconds,
          framerate: camera.framerate,
          log: log.child({ camera: camera.name }),
        }),
      );
    }
  }

  /** The camera's ring (its PreRollHook), or undefined for a camera not configured. */
  ring(camera: string): PreRollRing | undefined {
    return this.rings.get(camera);
  }

  /** Bytes and files kept per camera (status, bench:panic). */
  usage(): { camera: string; bytes: number; files: number }[] {
    return [...this.rings.values()].map((ring) => ({
      camera: ring.camera,
      bytes: ring.bytes(),
      files: ring.files(),
    }));
  }

  start(): Promise<void> {
    // A box without cameras (a hub) has no pre-roll: no folder, and nothing to warn about.
    if (this.rings.size === 0) return Promise.resolve();
    // Left over from a daemon that was killed: the segments' times meant nothing to this one.
    for (const ring of this.rings.values()) ring.clear();
    mkdirSync(this.settings.root, { recursive: true, mode: 0o750 });
    try {
      if (statfsSync(this.settings.root).type !== TMPFS_MAGIC)
        this.log.warn(
          { dir: this.settings.root },
          'the pre-roll folder is not on a tmpfs: segments are written to disk all the time (set clips.preRollDir to a tmpfs, e.g. under /run)',
        );
    } catch {
      // statfs is informational only.
    }
    return Promise.resolve();
  }

  stop(): Promise<void> {
    for (const ring of this.rings.values()) ring.clear();
    removeIfEmpty(this.settings.root);
    return Promise.resolve();
  }

  healthy(): boolean {
    return true;
  }
}
