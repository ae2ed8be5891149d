// The hub's archive of the site's panic clips, for the console: the durable clip receiver
// (clips/receiver.ts, the same one `outpost clips pull` runs) on a persistent session at the hub's own
// broker (loopback, local-admin), so a clip sent while the archive was not running waits for it. Each
// clip's progress, its storing (sha256 checked) or its failure goes into its panic alert's inbox
// entry, so every console sees it; the clips themselves are fetched from the hub over HTTPS
// (/api/clips, server.ts) and checked again in the page. Storage is bounded by
// `console.clips.quotaBytes`: past it, clips whose alert was acknowledged go first, then the oldest.
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { mqttReceiverLink } from '../clips/receiver-link.js';
import { ClipReceiver, type ReceiverLink } from '../clips/receiver.js';
import type { Service } from '../lifecycle/service.js';
import {
  clipManifestPayload,
  jsonOf,
  type ArchivedClip,
  type ClipManifestPayload,
} from '../mqtt/contract.js';
import { topics } from '../mqtt/topics.js';
import type { AlertInbox } from './inbox.js';
import { writeDurably } from '../files.js';
import type { LocalBus } from './local-bus.js';

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export interface ClipArchiveOptions {
  site: string;
  dataDir: string;
  quotaBytes: number;
  bus: LocalBus;
  inbox: AlertInbox;
  /** The hub broker's loopback listener and the local-admin credential, known once the broker runs. */
  connection: () => { url: string; password: string };
  log: Logger;
  /** Instead of MQTT.js to the loopback listener (tests). */
  link?: ReceiverLink;
  /** The receiver's waits (tests). */
  chunksAfterMs?: number;
}

export class ClipArchive implements Service {
  readonly name = 'clip archive';
  readonly dir: string;
  private receiver: ClipReceiver | undefined;
  /** Manifests seen at the hub, by `device/clipId`: what a clip's list entry shows. */
  private readonly manifests = new Map<string, ClipManifestPayload>();
  private subscribed = false;
  private running = false;
  private enforcing: Promise<void> = Promise.resolve();

  constructor(private readonly options: ClipArchiveOptions) {
    this.dir = join(options.dataDir, 'console', 'clips');
  }

  async start(): Promise<void> {
    const { site, bus, inbox, log } = this.options;
    this.running = true;
    if (!this.subscribed) {
      this.subscribed = true;
      // Manifests are small JSON: kept beside each clip as its description (duration, cameras, start).
      bus.subscribeLocal(topics.clipManifest(site, '+', '+'), (topic, payload) => {
        if (!this.running) return;
        const manifest = clipManifestPayload.safeParse(jsonOf(payload));
        const device = topic.split('/').at(-3) ?? '';
        if (!manifest.success || manifest.data.device !== device) return;
        this.manifests.set(`${device}/${manifest.data.clipId}`, manifest.data);
        inbox.updateClip(device, manifest.data.clipId, {
          state: 'receiving',
          have: 0,
          of: manifest.data.chunks,
          sizeBytes: manifest.data.sizeBytes,
          sha256: manifest.data.sha256,
          durationMs: manifest.data.durationMs,
        });
      });
    }
    const link =
      this.options.link ??
      (() => {
        const { url, password } = this.options.connection();
        return mqttReceiverLink({
          url,
          username: 'local-admin',
          password,
          clientId: 'local-admin.clips-archive',
          say: (line) => log.info({ event: line }, 'clip archive link'),
        });
      })();
    const receiver = new ClipReceiver({
      site,
      dir: this.dir,
      link,
      ...(this.options.chunksAfterMs !== undefined ? { chunksAfterMs: this.options.chunksAfterMs } : {}),
      events: {
        clip: (clip) => {
          const manifest = this.manifests.get(`${clip.device}/${clip.clipId}`);
          if (manifest) void this.describe(clip.device, clip.clipId, manifest);
          log.info(
            { device: clip.device, clip: clip.clipId, bytes: clip.sizeBytes },
            'clip archived (sha256 checked)',
          );
          inbox.updateClip(clip.device, clip.clipId, {
            state: 'stored',
            have: manifest?.chunks ?? 0,
            of: manifest?.chunks ?? null,
            sizeBytes: clip.sizeBytes,
            sha256: clip.sha256,
            durationMs: manifest?.durationMs ?? null,
          });
          this.enforceQuota();
        },
        failed: ({ device, clipId, message }) =>
          inbox.updateClip(device, clipId, {
            state: 'failed',
            have: 0,
            of: null,
            sizeBytes: null,
            sha256: null,
            durationMs: null,
            message: message.slice(0, 500),
          }),
        progress: (clips) => {
          for (const clip of clips) {
            if (clip.of === undefined) continue;
            const manifest = this.manifests.get(`${clip.device}/${clip.clipId}`);
            inbox.updateClip(clip.device, clip.clipId, {
              state: 'receiving',
              have: clip.have,
              of: clip.of,
              sizeBytes: manifest?.sizeBytes ?? null,
              sha256: manifest?.sha256 ?? null,
              durationMs: manifest?.durationMs ?? null,
            });
          }
        },
        mismatch: (device, clipId, sizeBytes) =>
          log.warn({ device, clip: clipId, bytes: sizeBytes }, 'clip sha256 mismatch; fetching it again'),
        problem: (what) => log.warn({ problem: what }, 'clip archive'),
      },
    });
    this.receiver = receiver;
    await receiver.start();
    this.enforceQuota();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.receiver?.stop();
    this.receiver = undefined;
    await this.enforcing;
  }

  healthy(): boolean {
    return this.receiver?.healthy() ?? false;
  }

  /** The file of a stored clip, when there is one (names checked: no path can be smuggled in). */
  file(device: string, clipId: string): string | undefined {
    if (!SEGMENT.test(device) || !SEGMENT.test(clipId)) return undefined;
    return join(this.dir, device, `${clipId}.mp4`);
  }

  /** Every stored clip, newest first. */
  async list(): Promise<ArchivedClip[]> {
    const clips: ArchivedClip[] = [];
    for (const device of await readdir(this.dir).catch(() => [] as string[])) {
      if (!SEGMENT.test(device)) continue;
      for (const name of await readdir(join(this.dir, device)).catch(() => [] as string[])) {
        if (!name.endsWith('.mp4')) continue;
        const clipId = name.slice(0, -'.mp4'.length);
        const info = await stat(join(this.dir, device, name)).catch(() => undefined);
        if (!info) continue;
        const manifest = this.manifests.get(`${device}/${clipId}`) ?? (await this.described(device, clipId));
        clips.push({
          device,
          clipId,
          sizeBytes: info.size,
          sha256: manifest?.sha256 ?? null,
          durationMs: manifest?.durationMs ?? null,
          startAt: manifest?.startAt ?? null,
          cameras: manifest?.cameras ?? [],
          storedAt: info.mtimeMs,
          acknowledged: this.options.inbox.clipAcknowledged(device, clipId),
        });
      }
    }
    return clips.sort((a, b) => b.storedAt - a.storedAt);
  }

  /** The manifest kept beside a stored clip, `{clipId}.manifest.json`. */
  private async describe(device: string, clipId: string, manifest: ClipManifestPayload): Promise<void> {
    await writeDurably(join(this.dir, device, `${clipId}.manifest.json`), JSON.stringify(manifest), {
      makeFolder: true,
    }).catch((error: unknown) => this.options.log.warn({ err: error }, 'clip description not written'));
  }

  private async described(device: string, clipId: string): Promise<ClipManifestPayload | undefined> {
    try {
      const parsed = clipManifestPayload.safeParse(
        JSON.parse(await readFile(join(this.dir, device, `${clipId}.manifest.json`), 'utf8')),
      );
      if (!parsed.success) return undefined;
      this.manifests.set(`${device}/${clipId}`, parsed.data);
      return parsed.data;
    } catch {
      return undefined;
    }
  }

  /** Over the quota: acknowledged clips first, then the oldest, until under it. */
  private enforceQuota(): void {
    this.enforcing = this.enforcing.then(async () => {
      const clips = await this.list();
      let total = clips.reduce((sum, clip) => sum + clip.sizeBytes, 0);
      if (total <= this.options.quotaBytes) return;
      const order = [...clips].sort(
        (a, b) => Number(b.acknowledged) - Number(a.acknowledged) || a.storedAt - b.storedAt,
      );
      for (const clip of order) {
        if (total <= this.options.quotaBytes) break;
        const file = this.file(clip.device, clip.clipId);
        if (!file) continue;
        await rm(file, { force: true });
        await rm(join(this.dir, clip.device, `${clip.clipId}.manifest.json`), { force: true });
        total -= clip.sizeBytes;
        this.options.inbox.updateClip(clip.device, clip.clipId, {
          state: 'evicted',
          have: 0,
          of: null,
          sizeBytes: clip.sizeBytes,
          sha256: clip.sha256,
          durationMs: clip.durationMs,
          message: 'removed by the archive quota (console.clips.quotaBytes)',
        });
        this.options.log.info(
          {
            device: clip.device,
            clip: clip.clipId,
            acknowledged: clip.acknowledged,
            quota: this.options.quotaBytes,
          },
          'clip removed from the archive (quota)',
        );
      }
    });
  }
}
