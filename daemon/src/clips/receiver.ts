// The clip receiver, console side: follows a site's alerts, clip manifests and chunks and keeps an
// archive of verified clips, `DIR/{device}/{clipId}.mp4`, and of clips a box said it could not make,
// `DIR/{device}/{clipId}.failed.json`. `outpost clips pull` runs it; the hub's clip archive embeds it.
//
// Nothing it was told is kept only in memory. A clip it knows of (from its alert, its manifest or a
// chunk) has a folder `DIR/.partial/{device}/{clipId}/` with `state.json` (when it was first heard of,
// the alert's press time and text, what the box last answered), `manifest.json` and `chunk-{n}`; a
// message is acknowledged to the broker (PUBACK) only once what it said is on disk, so a receiver
// killed at any moment gets again, from its persistent session, whatever it had not written down.
// A restarted receiver reads those folders back and reports what is still unresolved, with its age.
//
// It asks for what has not come, with `cmd/clip-chunks`: missing chunks after `chunksAfterMs` without
// progress, a missing manifest (an empty list re-sends it) `manifestAfterMs` after the alert; then
// again with the wait doubled each time, up to `maxAskIntervalMs`, and not while the box's retained
// status says it is offline (its session queues commands; asking then only piles them up). The box's
// reply (`reply/clip-chunks`) is kept with the clip, so the list of unresolved clips says what the box
// answered ("no clip … on this box", "still being recorded").
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Service } from '../lifecycle/service.js';
import {
  alertPayload,
  clipManifestPayload,
  jsonOf,
  replyPayload,
  statusPayload,
  type AlertPayload,
  type ClipManifestPayload,
} from '../mqtt/contract.js';
import { sitePrefix, topics } from '../mqtt/topics.js';
import { writeDurably } from '../files.js';

/** How the receiver reaches the site broker: a persistent session at QoS 1 (receiver-link.ts). */
export interface ReceiverLink {
  /**
   * Subscribe to `filters` and hand every message to `handle`, one at a time, in order; acknowledge a
   * message (PUBACK) only once its `handle` resolved. Resolves once subscribed.
   */
  open(filters: readonly string[], handle: (topic: string, payload: Buffer) => Promise<void>): Promise<void>;
  /** Publish at QoS 1 (a command to a box). */
  publish(topic: string, payload: string): void;
  close(): Promise<void>;
}

export interface ReceivedClip {
  device: string;
  clipId: string;
  path: string;
  sha256: string;
  sizeBytes: number;
}

export interface FailedClip {
  device: string;
  clipId: string;
  /** The box's reason, from its `clip-failed` alert. */
  message: string;
  /** `DIR/{device}/{clipId}.failed.json`: the alert, kept in the archive in the clip's place. */
  path: string;
}

export interface UnresolvedClip {
  device: string;
  clipId: string;
  waitingFor: 'manifest' | 'chunks';
  have: number;
  /** Chunks in the clip, once its manifest is here. */
  of: number | undefined;
  /** When this receiver first heard of the clip (its own clock). */
  firstSeenAt: number;
  /** The press, from the panic alert (the box's clock), when the alert was seen. */
  pressedAt: number | undefined;
  ageMs: number;
  /** Since the last manifest or new chunk (or since first heard of). */
  quietMs: number;
  /** Requests sent since the last progress. */
  asks: number;
  /** The box's last answer to a request for this clip. */
  boxSays: string | undefined;
}

/** What happens, for a person (the CLI prints lines) or a log (the hub's archive). */
export interface ReceiverEvents {
  alert?(device: string, alert: AlertPayload): void;
  clip?(clip: ReceivedClip): void;
  failed?(clip: FailedClip): void;
  /** A request went to the box: `chunks` empty for the manifest. */
  asked?(clip: UnresolvedClip, chunks: readonly number[]): void;
  /** The box answered a request. */
  answered?(device: string, clipId: string, answer: string): void;
  /** A clip's bytes did not match its manifest: it is fetched again. */
  mismatch?(device: string, clipId: string, sizeBytes: number): void;
  /** A message that could not be used (bad payload, a disk error). */
  problem?(what: string): void;
  /** Something changed in the clips under way (redraw a progress line). */
  progress?(clips: UnresolvedClip[]): void;
}

export interface ClipReceiverDeps {
  site: string;
  /** The archive folder (created if missing). */
  dir: string;
  link: ReceiverLink;
  events?: ReceiverEvents;
  /** Ask for missing chunks after this long without progress on a clip whose manifest is here. */
  chunksAfterMs?: number;
  /** Ask for a missing manifest this long after the clip was first heard of. */
  manifestAfterMs?: number;
  /** The longest wait between two requests for one clip (the wait doubles from the first). */
  maxAskIntervalMs?: number;
  /** Wall clock (tests). */
  now?: () => number;
}

export const RECEIVER_DEFAULTS = {
  chunksAfterMs: 5000,
  manifestAfterMs: 30_000,
  maxAskIntervalMs: 300_000,
} as const;

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** At most this many chunk numbers in one request (the verb takes 4096). */
const ASK_CHUNKS_MAX = 512;

const clipState = z.object({
  device: z.string(),
  clipId: z.string(),
  firstSeenAt: z.number(),
  pressedAt: z.number().optional(),
  alertMessage: z.string().optional(),
  boxSays: z.string().optional(),
});
type ClipState = z.infer<typeof clipState>;

interface Pending extends ClipState {
  manifest: ClipManifestPayload | undefined;
  have: Set<number>;
  lastProgressAt: number;
  asks: number;
  nextAskAt: number;
}

export class ClipReceiver implements Service {
  readonly name = 'clip-receiver';
  private readonly pending = new Map<string, Pending>();
  /** Devices whose retained status says offline. */
  private readonly offline = new Set<string>();
  /** Request id → the clip it asked about (this run's requests only). */
  private readonly asked = new Map<string, { device: string; clipId: string }>();
  private timer: NodeJS.Timeout | undefined;
  /** Answers being written down. */
  private readonly saving = new Set<Promise<void>>();
  private running = false;
  private opened = false;
  private readonly chunksAfterMs: number;
  private readonly manifestAfterMs: number;
  private readonly maxAskIntervalMs: number;
  private readonly now: () => number;
  private readonly events: ReceiverEvents;
  private readonly prefix: string;

  constructor(private readonly deps: ClipReceiverDeps) {
    this.chunksAfterMs = deps.chunksAfterMs ?? RECEIVER_DEFAULTS.chunksAfterMs;
    this.manifestAfterMs = deps.manifestAfterMs ?? RECEIVER_DEFAULTS.manifestAfterMs;
    this.maxAskIntervalMs = deps.maxAskIntervalMs ?? RECEIVER_DEFAULTS.maxAskIntervalMs;
    this.now = deps.now ?? Date.now;
    this.events = deps.events ?? {};
    this.prefix = sitePrefix(deps.site);
  }

  /** The subscriptions: alerts, manifests, chunks, the boxes' status and their answers to requests. */
  filters(): string[] {
    const { site } = this.deps;
    return [
      topics.alert(site, '+'),
      topics.clipManifest(site, '+', '+'),
      `${topics.clipManifest(site, '+', '+')}/chunk/+`,
      topics.status(site, '+'),
      topics.reply(site, '+', 'clip-chunks'),
    ];
  }

  /** Read back what an earlier run left, then subscribe. Resolves once subscribed. */
  async start(): Promise<void> {
    if (this.running) return;
    await mkdir(this.partialRoot(), { recursive: true });
    await this.load();
    this.running = true;
    try {
      await this.deps.link.open(this.filters(), (topic, payload) => this.handle(topic, payload));
    } catch (error) {
      this.running = false; // a start that failed can be tried again
      throw error;
    }
    this.opened = true;
    for (const p of [...this.pending.values()]) await this.tryComplete(p);
    this.timer = setInterval(() => this.askForMissing(), Math.min(1000, this.chunksAfterMs));
    this.timer.unref();
    this.showProgress();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.opened) await this.deps.link.close();
    this.opened = false;
    await Promise.all(this.saving);
  }

  healthy(): boolean {
    return this.running;
  }

  /** Clips heard of and neither verified nor announced as failed, oldest first. */
  unresolved(): UnresolvedClip[] {
    const now = this.now();
    return [...this.pending.values()]
      .sort((a, b) => a.firstSeenAt - b.firstSeenAt || a.clipId.localeCompare(b.clipId))
      .map((p) => ({
        device: p.device,
        clipId: p.clipId,
        waitingFor: p.manifest ? 'chunks' : 'manifest',
        have: p.have.size,
        of: p.manifest?.chunks,
        firstSeenAt: p.firstSeenAt,
        pressedAt: p.pressedAt,
        ageMs: Math.max(0, now - p.firstSeenAt),
        quietMs: Math.max(0, now - p.lastProgressAt),
        asks: p.asks,
        boxSays: p.boxSays,
      }));
  }

  private partialRoot(): string {
    return join(this.deps.dir, '.partial');
  }

  private partialDir(p: { device: string; clipId: string }): string {
    return join(this.partialRoot(), p.device, p.clipId);
  }

  private clipPath(device: string, clipId: string): string {
    return join(this.deps.dir, device, `${clipId}.mp4`);
  }

  private failedPath(device: string, clipId: string): string {
    return join(this.deps.dir, device, `${clipId}.failed.json`);
  }

  /** In the archive already, verified or announced as failed. */
  private settled(device: string, clipId: string): boolean {
    return existsSync(this.clipPath(device, clipId)) || existsSync(this.failedPath(device, clipId));
  }

  /** The clips an earlier run was still waiting for. */
  private async load(): Promise<void> {
    const root = this.partialRoot();
    for (const device of await readdir(root).catch(() => [] as string[])) {
      if (!SEGMENT.test(device)) continue;
      for (const clipId of await readdir(join(root, device)).catch(() => [] as string[])) {
        if (!SEGMENT.test(clipId)) continue;
        const dir = join(root, device, clipId);
        const files = await readdir(dir).catch(() => [] as string[]);
        const saved = clipState.safeParse(await readJson(join(dir, 'state.json')));
        // A folder from before state.json was kept: its age is the folder's.
        const firstSeenAt = saved.success
          ? saved.data.firstSeenAt
          : await stat(dir).then(
              (s) => s.mtimeMs,
              () => this.now(),
            );
        const manifest = files.includes('manifest.json')
          ? clipManifestPayload.safeParse(await readJson(join(dir, 'manifest.json')))
          : undefined;
        const have = new Set<number>();
        for (const file of files) {
          const chunk = /^chunk-(\d+)$/.exec(file);
          if (chunk?.[1]) have.add(Number(chunk[1]));
        }
        const p: Pending = {
          ...(saved.success ? saved.data : {}),
          device,
          clipId,
          firstSeenAt,
          manifest: manifest?.success ? manifest.data : undefined,
          have,
          lastProgressAt: this.now(),
          asks: 0,
          nextAskAt: 0,
        };
        p.nextAskAt = this.now() + this.firstWait(p);
        this.pending.set(`${device}/${clipId}`, p);
      }
    }
  }

  private firstWait(p: Pending): number {
    return p.manifest ? this.chunksAfterMs : this.manifestAfterMs;
  }

  /** The clip's entry, made (and written down) when it is new; undefined when it is settled. */
  private async pendingFor(
    device: string,
    clipId: string,
    alert?: AlertPayload,
  ): Promise<Pending | undefined> {
    const key = `${device}/${clipId}`;
    let p = this.pending.get(key);
    if (!p) {
      if (this.settled(device, clipId)) return undefined; // a duplicate of something finished
      const now = this.now();
      p = {
        device,
        clipId,
        firstSeenAt: now,
        manifest: undefined,
        have: new Set(),
        lastProgressAt: now,
        asks: 0,
        nextAskAt: 0,
      };
      p.nextAskAt = now + this.firstWait(p);
      this.pending.set(key, p);
    } else if (!alert || p.pressedAt !== undefined) {
      return p;
    }
    if (alert) {
      p.pressedAt = alert.at;
      p.alertMessage = alert.message;
    }
    // Before the message is acknowledged: the receiver must not forget a clip it was told of.
    await this.saveState(p);
    return p;
  }

  private async saveState(p: Pending): Promise<void> {
    const dir = this.partialDir(p);
    await mkdir(dir, { recursive: true });
    const state: ClipState = {
      device: p.device,
      clipId: p.clipId,
      firstSeenAt: p.firstSeenAt,
      ...(p.pressedAt !== undefined ? { pressedAt: p.pressedAt } : {}),
      ...(p.alertMessage !== undefined ? { alertMessage: p.alertMessage } : {}),
      ...(p.boxSays !== undefined ? { boxSays: p.boxSays } : {}),
    };
    await writeDurably(join(dir, 'state.json'), `${JSON.stringify(state)}\n`);
  }

  private async handle(topic: string, payload: Buffer): Promise<void> {
    if (!topic.startsWith(`${this.prefix}/`)) return;
    const levels = topic.slice(this.prefix.length + 1).split('/');
    const [device, kind, third, fourth, fifth] = levels;
    if (!device || !SEGMENT.test(device)) return;
    try {
      if (kind === 'alert' && levels.length === 2) await this.onAlert(device, topic, payload);
      else if (kind === 'status' && levels.length === 2) this.onStatus(device, payload);
      else if (kind === 'reply' && third === 'clip-chunks' && levels.length === 3) this.onReply(payload);
      else if (kind === 'clip' && third && SEGMENT.test(third)) {
        if (levels.length === 3) await this.onManifest(device, third, topic, payload);
        else if (levels.length === 5 && fourth === 'chunk' && fifth !== undefined && /^\d{1,6}$/.test(fifth))
          await this.onChunk(device, third, Number(fifth), payload);
      }
    } catch (error) {
      // A disk error: not acknowledged, so the broker sends the message again (receiver-link.ts).
      this.events.problem?.(`${topic}: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
  }

  private async onAlert(device: string, topic: string, payload: Buffer): Promise<void> {
    const parsed = alertPayload.safeParse(jsonOf(payload));
    if (!parsed.success) return this.events.problem?.(`${topic}: not an alert payload`);
    const alert = parsed.data;
    this.events.alert?.(device, alert);
    const clipId = alert.clipId;
    if (!clipId || !SEGMENT.test(clipId)) return;
    if (alert.kind === 'clip-failed') {
      // No manifest will come: keep the box's word in the clip's place, and stop waiting and asking.
      const path = this.failedPath(device, clipId);
      if (!existsSync(this.clipPath(device, clipId))) {
        await mkdir(join(this.deps.dir, device), { recursive: true });
        await writeDurably(path, `${JSON.stringify(alert)}\n`);
      }
      await rm(this.partialDir({ device, clipId }), { recursive: true, force: true });
      this.pending.delete(`${device}/${clipId}`);
      this.events.failed?.({ device, clipId, message: alert.message, path });
      this.showProgress();
      return;
    }
    if (alert.kind !== 'panic') return;
    await this.pendingFor(device, clipId, alert);
    this.showProgress();
  }

  private onStatus(device: string, payload: Buffer): void {
    const parsed = statusPayload.safeParse(jsonOf(payload));
    if (!parsed.success) return;
    if (parsed.data.state !== 'offline') {
      if (this.offline.delete(device)) {
        // Back: what it stored meanwhile comes first; ask only if it does not.
        for (const p of this.pending.values())
          if (p.device === device) p.nextAskAt = this.now() + this.waitAfter(p);
      }
    } else {
      this.offline.add(device);
    }
  }

  private onReply(payload: Buffer): void {
    const parsed = replyPayload.safeParse(jsonOf(payload));
    if (!parsed.success) return;
    const about = this.asked.get(parsed.data.id);
    if (!about) return; // another console's request, or one of an earlier run
    this.asked.delete(parsed.data.id);
    const p = this.pending.get(`${about.device}/${about.clipId}`);
    const answer = parsed.data.ok
      ? `resending ${describeResend(parsed.data.result)}`
      : (parsed.data.error?.message ?? 'refused without a reason');
    this.events.answered?.(about.device, about.clipId, answer);
    if (!p || p.boxSays === answer) return;
    p.boxSays = answer;
    // Not waited for (the answer is for people; a new request gets a new one), but stop() waits.
    const saving = this.saveState(p)
      .catch((error: unknown) =>
        this.events.problem?.(`${p.device}/${p.clipId}: state not saved: ${String(error)}`),
      )
      .finally(() => this.saving.delete(saving));
    this.saving.add(saving);
  }

  private async onManifest(device: string, clipId: string, topic: string, payload: Buffer): Promise<void> {
    const parsed = clipManifestPayload.safeParse(jsonOf(payload));
    if (!parsed.success || parsed.data.clipId !== clipId)
      return this.events.problem?.(`${topic}: not a clip manifest`);
    const p = await this.pendingFor(device, clipId);
    if (!p) return;
    if (!p.manifest || p.manifest.sha256 !== parsed.data.sha256) {
      await writeDurably(join(this.partialDir(p), 'manifest.json'), JSON.stringify(parsed.data));
      p.manifest = parsed.data;
    }
    this.progressed(p);
    await this.tryComplete(p);
    this.showProgress();
  }

  private async onChunk(device: string, clipId: string, index: number, payload: Buffer): Promise<void> {
    const p = await this.pendingFor(device, clipId);
    if (!p) return;
    if (p.manifest && index >= p.manifest.chunks) return;
    if (!p.have.has(index)) {
      // Not fsynced: a chunk lost to a power cut is asked for again (its size is checked below).
      await writeFile(join(this.partialDir(p), `chunk-${index}`), payload);
      p.have.add(index);
      this.progressed(p);
    }
    await this.tryComplete(p);
    this.showProgress();
  }

  private progressed(p: Pending): void {
    p.lastProgressAt = this.now();
    p.asks = 0;
    p.nextAskAt = p.lastProgressAt + this.firstWait(p);
  }

  /** The wait before the next request: the first wait, doubled per request since the last progress. */
  private waitAfter(p: Pending): number {
    return Math.min(this.maxAskIntervalMs, this.firstWait(p) * 2 ** p.asks);
  }

  private async tryComplete(p: Pending): Promise<void> {
    const manifest = p.manifest;
    if (!manifest || p.have.size < manifest.chunks) return;
    const dir = this.partialDir(p);
    const pieces: Buffer[] = [];
    const cut: number[] = [];
    for (let n = 0; n < manifest.chunks; n += 1) {
      const piece = await readFile(join(dir, `chunk-${n}`)).catch(() => undefined);
      const want = Math.min(manifest.chunkBytes, manifest.sizeBytes - n * manifest.chunkBytes);
      if (piece?.length !== want) cut.push(n);
      else pieces.push(piece);
    }
    if (cut.length > 0) {
      // Cut short or lost (a power cut after the write): ask for those again.
      for (const n of cut) {
        p.have.delete(n);
        await rm(join(dir, `chunk-${n}`), { force: true });
      }
      p.nextAskAt = this.now();
      return;
    }
    const bytes = Buffer.concat(pieces);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== manifest.sha256 || bytes.length !== manifest.sizeBytes) {
      this.events.mismatch?.(p.device, p.clipId, bytes.length);
      for (const n of p.have) await rm(join(dir, `chunk-${n}`), { force: true });
      p.have.clear();
      p.nextAskAt = this.now(); // ask at the next check
      return;
    }
    const path = this.clipPath(p.device, p.clipId);
    await mkdir(join(this.deps.dir, p.device), { recursive: true });
    await writeDurably(path, bytes);
    await rm(dir, { recursive: true, force: true });
    this.pending.delete(`${p.device}/${p.clipId}`);
    this.events.clip?.({ device: p.device, clipId: p.clipId, path, sha256, sizeBytes: bytes.length });
  }

  private askForMissing(): void {
    if (!this.running) return;
    const now = this.now();
    for (const p of this.pending.values()) {
      if (now < p.nextAskAt || this.offline.has(p.device)) continue;
      const missing = p.manifest
        ? Array.from({ length: p.manifest.chunks }, (_, i) => i).filter((i) => !p.have.has(i))
        : [];
      if (p.manifest && missing.length === 0) continue; // complete; tryComplete is on it
      const wanted = missing.slice(0, ASK_CHUNKS_MAX);
      const id = randomUUID();
      this.asked.set(id, { device: p.device, clipId: p.clipId });
      if (this.asked.size > 1000) this.asked.delete(this.asked.keys().next().value ?? '');
      this.deps.link.publish(
        topics.cmd(this.deps.site, p.device, 'clip-chunks'),
        JSON.stringify({ id, args: { clipId: p.clipId, chunks: wanted } }),
      );
      p.asks += 1;
      p.nextAskAt = now + this.waitAfter(p);
      const [asked] = this.unresolved().filter((u) => u.device === p.device && u.clipId === p.clipId);
      if (asked) this.events.asked?.(asked, wanted);
    }
  }

  private showProgress(): void {
    this.events.progress?.(this.unresolved());
  }
}

/** `3 h 12 min`, `4 min 5 s`, `12 s`: an age for people. */
export function formatAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ${s % 60} s`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min`;
  return `${Math.floor(h / 24)} days ${h % 24} h`;
}

/** One line about a clip still under way, for people. */
export function describeUnresolved(u: UnresolvedClip): string {
  const what =
    u.waitingFor === 'manifest'
      ? `waiting for its manifest${u.have > 0 ? ` (${u.have} chunks here)` : ''}`
      : `${u.have}/${u.of ?? '?'} chunks`;
  return [
    `${u.device}/${u.clipId}: ${what}`,
    `first heard of ${formatAge(u.ageMs)} ago`,
    ...(u.pressedAt !== undefined ? [`pressed ${new Date(u.pressedAt).toISOString()}`] : []),
    ...(u.asks > 0 ? [`asked ${u.asks} time${u.asks === 1 ? '' : 's'}`] : []),
    ...(u.boxSays !== undefined ? [`the box says: ${u.boxSays}`] : []),
  ].join('; ');
}

function describeResend(result: unknown): string {
  const chunks = (result as { chunks?: unknown } | undefined)?.chunks;
  return Array.isArray(chunks) && chunks.length > 0 ? `${chunks.length} chunks` : 'the manifest';
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}
