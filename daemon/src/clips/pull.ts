// `outpost clips pull`: the clip receiver (receiver.ts) run from the command line against a site
// broker, until the first verified clip (`once`), a timeout or a signal. It says what happens in lines
// for a person, and on start lists the clips an earlier run left unresolved, with their age.
import type { AlertPayload } from '../mqtt/contract.js';
import { mqttReceiverLink } from './receiver-link.js';
import {
  ClipReceiver,
  describeUnresolved,
  type FailedClip,
  type ReceivedClip,
  type UnresolvedClip,
} from './receiver.js';

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
  /** Ask for a manifest that has not come this long after the clip's alert. */
  manifestAfterMs?: number;
  signal?: AbortSignal;
  /** Events for a person: alerts, finished clips, problems. */
  say?: (line: string) => void;
  /** Progress, redrawn in place on a TTY. */
  progress?: (line: string) => void;
}

export type PulledClip = ReceivedClip;

export interface PullResult {
  clips: PulledClip[];
  alerts: AlertPayload[];
  /** Clips heard of but not complete when the receiver ended (kept on disk for the next run). */
  incomplete: Array<{ device: string; clipId: string; have: number; of: number | undefined }>;
  /** The same, with their age and what the box said. */
  unresolved: UnresolvedClip[];
  /** Clips the box said it could not make (a `clip-failed` alert): not waited for. */
  failed: Array<Omit<FailedClip, 'path'>>;
}

export async function pullClips(options: PullOptions): Promise<PullResult> {
  const say = options.say ?? (() => undefined);
  const progress = options.progress ?? (() => undefined);
  const result: PullResult = { clips: [], alerts: [], incomplete: [], unresolved: [], failed: [] };
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const receiver = new ClipReceiver({
    site: options.site,
    dir: options.out,
    link: mqttReceiverLink({
      url: options.url,
      username: options.username,
      password: options.password,
      ca: options.ca,
      clientId: options.clientId ?? `${options.username}.clips-pull`,
      say,
    }),
    ...(options.requestAfterMs !== undefined ? { chunksAfterMs: options.requestAfterMs } : {}),
    ...(options.manifestAfterMs !== undefined ? { manifestAfterMs: options.manifestAfterMs } : {}),
    events: {
      alert(device, alert) {
        result.alerts.push(alert);
        say(
          `alert ${device}: ${alert.kind} ${alert.state} ${alert.message}${alert.clipId ? ` (clip ${alert.clipId})` : ''}`,
        );
      },
      clip(clip) {
        result.clips.push(clip);
        say(`clip ${clip.device}/${clip.clipId}: ${clip.path} (${clip.sizeBytes} bytes, sha256 verified)`);
        if (options.once) finish();
      },
      failed({ device, clipId, message }) {
        result.failed.push({ device, clipId, message });
      },
      asked(clip, chunks) {
        say(
          `${clip.device}/${clip.clipId}: asking for ${chunks.length > 0 ? `${(clip.of ?? 0) - clip.have} missing chunks (${chunks.slice(0, 8).join(', ')}${chunks.length > 8 ? ', …' : ''} of ${clip.of})` : 'the manifest'}`,
        );
      },
      answered(device, clipId, answer) {
        say(`${device}/${clipId}: the box answers: ${answer}`);
      },
      mismatch(device, clipId, sizeBytes) {
        say(`${device}/${clipId}: sha256 mismatch (${sizeBytes} bytes); fetching it again`);
      },
      problem: say,
      progress(clips) {
        if (clips.length === 0) return;
        progress(
          clips
            .map((p) => {
              const pct = p.of ? Math.floor((100 * p.have) / Math.max(1, p.of)) : 0;
              const bar = p.of
                ? `[${'#'.repeat(Math.floor(pct / 5)).padEnd(20, '.')}]`
                : '[waiting for manifest]';
              return `${p.device}/${p.clipId} ${bar} ${p.have}/${p.of ?? '?'}`;
            })
            .join('  '),
        );
      },
    },
  });

  await receiver.start();
  say(`listening for clips on ${options.url} (site ${options.site}), writing to ${options.out}`);
  const before = receiver.unresolved();
  if (before.length > 0) {
    say(`${before.length} clip(s) unresolved from an earlier run:`);
    for (const clip of before) say(`  ${describeUnresolved(clip)}`);
  }
  const timer = options.timeoutMs ? setTimeout(finish, options.timeoutMs) : undefined;
  options.signal?.addEventListener('abort', finish, { once: true });
  if (options.signal?.aborted) finish();
  await finished;
  clearTimeout(timer);
  await receiver.stop();
  result.unresolved = receiver.unresolved();
  result.incomplete = result.unresolved.map(({ device, clipId, have, of }) => ({ device, clipId, have, of }));
  for (const f of result.failed) say(`not made on the box: ${f.device}/${f.clipId}: ${f.message}`);
  for (const clip of result.unresolved) say(`incomplete: ${describeUnresolved(clip)}`);
  return result;
}
