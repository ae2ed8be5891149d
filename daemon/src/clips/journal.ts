// Clips in progress, on disk: one small file per panic clip, `dataDir/clips/in-progress/{clipId}.json`,
// handed to the kernel (temp file, rename) on the press's own thread *before* the panic alert is handed
// to the uplink, then made durable in the background (fsync of the file and of the folder); removed
// once the clip is kept in the store or its `clip-failed` alert was acknowledged. A file still there at the next start is a clip the daemon
// stopped making (kill -9, crash, power cut, watchdog): panic.ts settles it, so the console that got
// the alert always gets an answer (docs/clips.md, "A daemon stopped during a clip").
//
// One file per clip, not one journal file rewritten: a press never waits on another clip's write, and
// removing an entry is one unlink. A press writes about 200 bytes once; nothing is written otherwise.
//
// Why before the alert, and why not fsynced first: once the alert may be on the wire, a kill must not
// be able to leave the box without the entry, or the console gets an alert and never an answer. Data
// written to the kernel survives a killed process (kill -9, a crash, the watchdog's abort), so the
// write and rename (~0.1 ms) close that window; waiting for the fsyncs as well would put milliseconds
// (more on an SD card) between the press and the alert. Only a power cut within those fsyncs can still
// lose the entry (docs/clips.md, "The window left").
import { renameSync, writeFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Service } from '../lifecycle/service.js';
import { syncDir, writeDurably } from '../files.js';

const inProgressClip = z.strictObject({
  clipId: z.string().regex(/^[\w.-]{1,64}$/),
  /** Wall time of the press. */
  at: z.number(),
  trigger: z.enum(['button', 'mqtt', 'cli']),
  cameras: z.array(z.string()),
  relatedClipId: z.string().min(1).max(64).optional(),
  /** Why the clip could not be made, once a clip-failed alert was sent for it (not yet acknowledged). */
  failed: z.string().max(500).optional(),
});

export type InProgressClip = z.infer<typeof inProgressClip>;

export class ClipJournal implements Service {
  readonly name = 'clip-journal';
  readonly dir: string;
  private found: InProgressClip[] = [];
  /** Each clip's entry write, so that its removal waits for it (an unlink before the rename would be undone). */
  private readonly writes = new Map<string, Promise<void>>();
  private opened = false;

  constructor(
    /** The clip store's folder (`dataDir/clips`). */
    clipsDir: string,
    private readonly log: Logger,
  ) {
    this.dir = join(clipsDir, 'in-progress');
  }

  /** Read what the last run left: the clips it was making when it stopped. */
  async start(): Promise<void> {
    if (this.opened) return;
    await mkdir(this.dir, { recursive: true, mode: 0o750 });
    const found: InProgressClip[] = [];
    for (const entry of await readdir(this.dir)) {
      const file = join(this.dir, entry);
      if (!entry.endsWith('.json')) {
        // A `.tmp` whose rename never happened: its clip had not been written down, nor had its alert
        // necessarily reached the uplink's store; there is nothing to settle from it.
        await rm(file, { force: true });
        continue;
      }
      const parsed = inProgressClip.safeParse(await readJson(file));
      if (parsed.success) {
        found.push(parsed.data);
      } else {
        // Written atomically by this module, so only a person editing it gets here. The name still says
        // which clip it was; the console is owed an answer for it all the same.
        const clipId = entry.slice(0, -'.json'.length);
        this.log.warn({ file, clipId }, 'clip in progress: entry unreadable; settling it by its name');
        found.push({ clipId, at: 0, trigger: 'button', cameras: [] });
      }
    }
    this.found = found.sort((a, b) => a.at - b.at || a.clipId.localeCompare(b.clipId));
    this.opened = true;
    if (this.found.length > 0)
      this.log.warn(
        { clips: this.found.map((clip) => clip.clipId) },
        'clips were in progress when the daemon last stopped',
      );
  }

  async stop(): Promise<void> {
    await Promise.all(this.writes.values());
  }

  healthy(): boolean {
    return this.opened;
  }

  /** The clips the last run left in progress (read at start). */
  leftovers(): InProgressClip[] {
    return [...this.found];
  }

  /**
   * Write the clip down as in progress. Before it returns, the entry is with the kernel (it survives the
   * process); the promise resolves once it is also durable (fsynced). Never throws or rejects: a
   * failure is logged. Call it before the clip's alert is published.
   */
  begin(clip: InProgressClip): Promise<void> {
    const path = this.path(clip.clipId);
    const temp = `${path}.tmp`;
    try {
      writeFileSync(temp, `${JSON.stringify(clip)}\n`, { mode: 0o640 });
      renameSync(temp, path);
    } catch (error) {
      this.log.error(
        { err: error, clipId: clip.clipId, dir: this.dir },
        'clip in progress could not be written down: a daemon stopped now would leave the console without an answer for it',
      );
      return Promise.resolve();
    }
    const synced = this.logFailure(
      fsyncPath(path).then(() => syncDir(this.dir)),
      clip,
      'clip in progress could not be fsynced: a power cut now could leave the console without an answer for it',
    );
    this.writes.set(clip.clipId, synced);
    return synced;
  }

  /**
   * The clip cannot be made and its clip-failed alert is on its way: keep the reason with the entry, so
   * that a daemon stopped before the hub acknowledged the alert sends the same one again. Only for a
   * clip written down with begin(); never rejects.
   */
  failed(clip: InProgressClip, reason: string): Promise<void> {
    if (!this.writes.has(clip.clipId)) return Promise.resolve();
    return this.write({ ...clip, failed: reason });
  }

  /** `work`, whose failure is logged with the clip and `message` (what it puts at risk); never rejects. */
  private logFailure(work: Promise<void>, clip: InProgressClip, message: string): Promise<void> {
    return work.catch((error: unknown) => {
      this.log.error({ err: error, clipId: clip.clipId, dir: this.dir }, message);
    });
  }

  /** Writes of one clip's entry go in order (each after the one before). */
  private write(clip: InProgressClip): Promise<void> {
    const before = this.writes.get(clip.clipId) ?? Promise.resolve();
    const write = this.logFailure(
      before.then(() => writeDurably(this.path(clip.clipId), `${JSON.stringify(clip)}\n`)),
      clip,
      'clip in progress could not be written down: a daemon stopped now would leave the console without an answer for it',
    );
    this.writes.set(clip.clipId, write);
    return write;
  }

  /** The clip is settled (kept in the store, or its clip-failed acknowledged): forget it, durably. */
  async finish(clipId: string): Promise<void> {
    const written = this.writes.get(clipId);
    const leftover = this.found.some((clip) => clip.clipId === clipId);
    if (!written && !leftover) return; // never written down (a press while stopped)
    await written;
    this.writes.delete(clipId);
    this.found = this.found.filter((clip) => clip.clipId !== clipId);
    try {
      await rm(this.path(clipId), { force: true });
      await syncDir(this.dir);
    } catch (error) {
      // Left behind, the entry is settled again at the next start: a clip in the store is then
      // recognised as finished, a failed one gets its clip-failed a second time (same alert id).
      this.log.warn({ err: error, clipId, dir: this.dir }, 'clip in progress: entry could not be removed');
    }
  }

  private path(clipId: string): string {
    return join(this.dir, `${clipId}.json`);
  }
}

/** fsync a file by its name: what was written to it, through any descriptor, reaches the disk. */
async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}
