// The reference receiver, console side (`outpost clips pull`): subscribes to a site's alerts, clip
// manifests and chunks with a persistent session (so what was sent while it was away is waiting at the
// hub), keeps chunks on disk under OUT/.partial as they come, and when a clip is complete checks its
// sha256 and writes OUT/{device}/{clipId}.mp4 atomically (temp file, fsync, rename). Missing chunks
// (or a missing manifest) are asked for again with `cmd/clip-chunks` after a quiet spell; a clip whose
// bytes do not match the manifest's sha256 is fetched again whole.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import {
  alertPayload,
  clipManifestPayload,
  type AlertPayload,
  type ClipManifestPayload,
} from '../mqtt/contract.js';
import { topics } from '../mqtt/topics.js';
import { writeDurably } from './store.js';

export interface PullOptions {
  url: string;
  username: string;
  password: string;
  /** PEM CA for mqtts:// (the site CA). */
  ca?: Buffer | undefined;
  site: string;
  out: string;
  /** Persistent session id; default `{username}.clips-pull`. */
  clientId?: string;
  /** Resolve after the first verified clip. */
  once?: boolean;
  /** Resolve after this long, complete or not. */
  timeoutMs?: number;
  /** Ask for missing chunks after this long without progress on a clip. */
  requestAfterMs?: number;
  signal?: AbortSignal;
  /** Events for a person: alerts, finished clips, problems. */
  say?: (line: string) => void;
  /** Progress, redrawn in place on a TTY. */
  progress?: (line: string) => void;
}

export interface PulledClip {
  device: string;
  clipId: string;
  path: string;
  sha256: string;
  sizeBytes: number;
}

export interface PullResult {
  clips: PulledClip[];
  alerts: AlertPayload[];
  /** Clips seen but not complete when the receiver ended. */
  incomplete: Array<{ device: string; clipId: string; have: number; of: number | undefined }>;
  /** Clips the box said it could not make (a `clip-failed` alert): not waited for. */
  failed: Array<{ device: string; clipId: string; message: string }>;
}

interface Partial {
  device: string;
  clipId: string;
  manifest: ClipManifestPayload | undefined;
  have: Set<number>;
  lastProgress: number;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export async function pullClips(options: PullOptions): Promise<PullResult> {
  const say = options.say ?? (() => undefined);
  const progress = options.progress ?? (() => undefined);
  const partialRoot = join(options.out, '.partial');
  await mkdir(partialRoot, { recursive: true });
  const partials = new Map<string, Partial>();
  const result: PullResult = { clips: [], alerts: [], incomplete: [], failed: [] };
  const prefix = `outpost/v1/${options.site}/`;

  const partialDir = (p: Pick<Partial, 'device' | 'clipId'>) => join(partialRoot, p.device, p.clipId);
  const finalPath = (device: string, clipId: string) => join(options.out, device, `${clipId}.mp4`);

  // Pick up where an earlier run left off.
  for (const device of await readdir(partialRoot).catch(() => [] as string[])) {
    for (const clipId of await readdir(join(partialRoot, device)).catch(() => [] as string[])) {
      const entry: Partial = {
        device,
        clipId,
        manifest: undefined,
        have: new Set(),
        lastProgress: Date.now(),
      };
      for (const file of await readdir(partialDir(entry))) {
        const chunk = /^chunk-(\d+)$/.exec(file);
        if (chunk?.[1]) entry.have.add(Number(chunk[1]));
        if (file === 'manifest.json') {
          entry.manifest = clipManifestPayload.parse(
            JSON.parse(await readFile(join(partialDir(entry), file), 'utf8')),
          );
        }
      }
      partials.set(`${device}/${clipId}`, entry);
    }
  }

  const client: MqttClient = connect(options.url, {
    username: options.username,
    password: options.password,
    clientId: options.clientId ?? `${options.username}.clips-pull`,
    clean: false,
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    protocolVersion: 4,
    ...(options.ca ? { ca: [options.ca], rejectUnauthorized: true } : {}),
  } satisfies IClientOptions);
  client.on('error', (error) => say(`mqtt: ${error.message}`));
  let connects = 0;
  client.on('connect', () => {
    connects += 1;
    if (connects > 1) say(`reconnected to ${options.url}`);
  });
  client.on('offline', () =>
    say(`lost ${options.url}; reconnecting (the session keeps what is sent meanwhile)`),
  );

  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const showProgress = () => {
    const parts = [...partials.values()].map((p) => {
      const of = p.manifest?.chunks;
      const pct = of ? Math.floor((100 * p.have.size) / Math.max(1, of)) : 0;
      const bar = of ? `[${'#'.repeat(Math.floor(pct / 5)).padEnd(20, '.')}]` : '[waiting for manifest]';
      return `${p.device}/${p.clipId} ${bar} ${p.have.size}/${of ?? '?'}`;
    });
    if (parts.length > 0) progress(parts.join('  '));
  };

  const tryComplete = async (p: Partial): Promise<void> => {
    const manifest = p.manifest;
    if (!manifest || p.have.size < manifest.chunks) return;
    const dir = partialDir(p);
    const pieces: Buffer[] = [];
    for (let n = 0; n < manifest.chunks; n += 1) pieces.push(await readFile(join(dir, `chunk-${n}`)));
    const bytes = Buffer.concat(pieces);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== manifest.sha256 || bytes.length !== manifest.sizeBytes) {
      say(`${p.device}/${p.clipId}: sha256 mismatch (${bytes.length} bytes); fetching it again`);
      for (const n of p.have) await rm(join(dir, `chunk-${n}`), { force: true });
      p.have.clear();
      p.lastProgress = 0; // ask at the next check
      return;
    }
    const path = finalPath(p.device, p.clipId);
    await mkdir(join(options.out, p.device), { recursive: true });
    await writeDurably(path, bytes);
    await rm(dir, { recursive: true, force: true });
    partials.delete(`${p.device}/${p.clipId}`);
    result.clips.push({ device: p.device, clipId: p.clipId, path, sha256, sizeBytes: bytes.length });
    say(`clip ${p.device}/${p.clipId}: ${path} (${bytes.length} bytes, sha256 verified)`);
    if (options.once) finish();
  };

  const partialFor = (device: string, clipId: string): Partial | undefined => {
    if (existsSync(finalPath(device, clipId))) return undefined; // done already: a duplicate
    const key = `${device}/${clipId}`;
    let p = partials.get(key);
    if (!p) {
      p = { device, clipId, manifest: undefined, have: new Set(), lastProgress: Date.now() };
      partials.set(key, p);
    }
    return p;
  };

  const handle = async (topic: string, payload: Buffer): Promise<void> => {
    if (!topic.startsWith(prefix)) return;
    const levels = topic.slice(prefix.length).split('/');
    const [device, kind, clipId, chunkWord, n] = levels;
    if (!device || !SEGMENT.test(device)) return;
    if (kind === 'alert' && levels.length === 2) {
      const parsed = alertPayload.safeParse(JSON.parse(payload.toString('utf8')));
      if (!parsed.success) return say(`${topic}: not an alert payload`);
      result.alerts.push(parsed.data);
      say(
        `alert ${device}: ${parsed.data.kind} ${parsed.data.state} ${parsed.data.message}${parsed.data.clipId ? ` (clip ${parsed.data.clipId})` : ''}`,
      );
      const clipId = parsed.data.clipId;
      if (!clipId || !SEGMENT.test(clipId)) return;
      if (parsed.data.kind === 'clip-failed') {
        // No manifest will come: stop waiting (and asking) for this clip.
        const p = partials.get(`${device}/${clipId}`);
        if (p) await rm(partialDir(p), { recursive: true, force: true });
        partials.delete(`${device}/${clipId}`);
        result.failed.push({ device, clipId, message: parsed.data.message });
        return;
      }
      partialFor(device, clipId);
      return;
    }
    if (kind !== 'clip' || !clipId || !SEGMENT.test(clipId)) return;
    const p = partialFor(device, clipId);
    if (!p) return;
    const dir = partialDir(p);
    await mkdir(dir, { recursive: true });
    if (levels.length === 3) {
      const parsed = clipManifestPayload.safeParse(JSON.parse(payload.toString('utf8')));
      if (!parsed.success || parsed.data.clipId !== clipId) return say(`${topic}: not a clip manifest`);
      p.manifest = parsed.data;
      await writeFile(join(dir, 'manifest.json'), JSON.stringify(parsed.data));
    } else if (levels.length === 5 && chunkWord === 'chunk' && n !== undefined && /^\d+$/.test(n)) {
      const index = Number(n);
      if (p.manifest && index >= p.manifest.chunks) return;
      if (!p.have.has(index)) {
        await writeFile(join(dir, `chunk-${index}`), payload);
        p.have.add(index);
      }
    } else {
      return;
    }
    p.lastProgress = Date.now();
    await tryComplete(p);
    showProgress();
  };

  let chain = Promise.resolve();
  client.on('message', (topic, payload) => {
    chain = chain
      .then(() => handle(topic, payload))
      .catch((error: unknown) => say(`${topic}: ${error instanceof Error ? error.message : String(error)}`));
  });

  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
  } catch (error) {
    client.end(true); // no reconnecting in the background of a command that failed
    throw error;
  }
  const filters = [topics.alert(options.site, '+'), `${prefix}+/clip/+`, `${prefix}+/clip/+/chunk/+`];
  const granted = await client.subscribeAsync(filters, { qos: 1 });
  if (granted.some((grant) => grant.qos === 128)) {
    client.end(true);
    throw new Error(`the broker refused the subscriptions ${filters.join(', ')}: use a console identity`);
  }
  say(`listening for clips on ${options.url} (site ${options.site}), writing to ${options.out}`);
  for (const p of [...partials.values()]) await tryComplete(p);

  // Ask again for what has not come.
  const requestAfterMs = options.requestAfterMs ?? 5000;
  const asker = setInterval(
    () => {
      for (const p of partials.values()) {
        if (Date.now() - p.lastProgress < requestAfterMs) continue;
        // Known only from its alert: the box is still recording it, and the manifest will come.
        if (!p.manifest && p.have.size === 0) continue;
        const missing = p.manifest
          ? Array.from({ length: p.manifest.chunks }, (_, i) => i).filter((i) => !p.have.has(i))
          : [];
        p.lastProgress = Date.now();
        if (p.manifest && missing.length === 0) continue;
        say(
          `${p.device}/${p.clipId}: asking for ${p.manifest ? `${missing.length} missing chunks (${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''} of ${p.manifest.chunks})` : 'the manifest'}`,
        );
        client.publish(
          topics.cmd(options.site, p.device, 'clip-chunks'),
          JSON.stringify({ id: randomUUID(), args: { clipId: p.clipId, chunks: missing.slice(0, 512) } }),
          { qos: 1 },
        );
      }
    },
    Math.min(1000, requestAfterMs),
  );

  const timer = options.timeoutMs ? setTimeout(finish, options.timeoutMs) : undefined;
  options.signal?.addEventListener('abort', finish, { once: true });
  await finished;
  clearInterval(asker);
  clearTimeout(timer);
  await chain;
  await client.endAsync();
  result.incomplete = [...partials.values()].map((p) => ({
    device: p.device,
    clipId: p.clipId,
    have: p.have.size,
    of: p.manifest?.chunks,
  }));
  for (const f of result.failed) say(`not made on the box: ${f.device}/${f.clipId}: ${f.message}`);
  for (const p of result.incomplete)
    say(`incomplete: ${p.device}/${p.clipId} ${p.have}/${p.of ?? '?'} chunks`);
  return result;
}
