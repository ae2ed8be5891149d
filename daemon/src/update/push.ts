// `outpost update push BUNDLE --device NAME… | --all`: send a bundle to boxes over the site LAN, from
// the hub or a tech's laptop, through the site broker (receiver.ts has the box's side). Resumable: each
// box says how much it already holds, so a push cut short (the tool stopped, the link dropped, the box
// restarted) goes on where it stopped, within this run (it reconnects, with backoff) or the next.
// With --wait (the default) it then follows each box's retained `update` topic to the outcome.
import { randomUUID } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { MqttClient } from 'mqtt';
import { OutpostError } from '../errors.js';
import { replyPayload, statusPayload, updatePayload, type UpdatePayload } from '../mqtt/contract.js';
import { connectTool, type ToolConnection, type ToolOptions } from '../mqtt/tool-client.js';
import { topics } from '../mqtt/topics.js';
import { hashFile } from './receiver.js';
import { run } from './run.js';

export interface PushOptions extends ToolOptions {
  /** Device names, or every device whose retained status says online. */
  devices: string[] | 'all';
  allowOlder?: boolean;
  /** Follow each box to its outcome (committed, rolled-back, refused, failed). */
  wait?: boolean;
  /** Chunks in flight at once. */
  window?: number;
  /** Reconnections allowed per box before giving up. */
  attempts?: number;
  say: (line: string) => void;
  progress?: (line: string) => void;
  /** Bound on waiting for an outcome, per box. */
  outcomeTimeoutMs?: number;
}

export interface PushResult {
  device: string;
  outcome: UpdatePayload['state'] | 'sent' | 'error';
  version: string | null;
  reason: string | null;
  /** A refusal's or failure's code (UPDATE_*), from the box or from this tool; else null. */
  code: string | null;
}

interface Bundle {
  file: string;
  size: number;
  sha256: string;
  version: string;
}

/** The bundle's version: from RAUC when it is installed here (no signature check), else the name. */
async function bundleVersion(file: string): Promise<string> {
  const info = await run('rauc', ['info', '--no-verify', '--output-format=json', file], {
    timeoutMs: 120_000,
  });
  if (info.status === 0) {
    try {
      const version = (JSON.parse(info.stdout) as { version?: unknown }).version;
      if (typeof version === 'string') return version;
    } catch {
      // fall through to the name
    }
  }
  return /-(\d+\.\d+\.\d+[^/]*?)\.raucb$/.exec(basename(file))?.[1] ?? 'unknown';
}

/** Commands to one box and their replies (exported for tests). */
export class Requester {
  private readonly waiting = new Map<
    string,
    (reply: { ok: boolean; result?: unknown; error?: { message: string } }) => void
  >();

  constructor(
    private readonly client: MqttClient,
    private readonly site: string,
    private readonly device: string,
  ) {
    client.on('message', (topic, payload) => {
      if (!topic.startsWith(topics.reply(site, device, ''))) return;
      let parsed;
      try {
        parsed = replyPayload.safeParse(JSON.parse(payload.toString('utf8')));
      } catch {
        return;
      }
      if (!parsed.success) return;
      const resolve = this.waiting.get(parsed.data.id);
      if (resolve) {
        this.waiting.delete(parsed.data.id);
        resolve(parsed.data);
      }
    });
  }

  async ready(): Promise<void> {
    await this.client.subscribeAsync(topics.reply(this.site, this.device, '+'), { qos: 1 });
  }

  async ask<T>(verb: string, args: object, timeoutMs: number, qos: 0 | 1 = 1): Promise<T> {
    const id = randomUUID();
    const reply = new Promise<{ ok: boolean; result?: unknown; error?: { message: string } }>(
      (resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiting.delete(id);
          reject(new Error(`no reply to ${verb} from ${this.device} within ${timeoutMs / 1000} s`));
        }, timeoutMs);
        this.waiting.set(id, (answer) => {
          clearTimeout(timer);
          resolve(answer);
        });
      },
    );
    // The reply's timer runs from here: a publish slower than it (a slow box, a full socket) must not
    // leave its rejection unhandled, which ended the whole tool (seen on the twin under load).
    reply.catch(() => undefined);
    try {
      await this.client.publishAsync(topics.cmd(this.site, this.device, verb), JSON.stringify({ id, args }), {
        qos,
      });
    } catch (error) {
      this.waiting.delete(id);
      throw error;
    }
    const answer = await reply;
    if (!answer.ok)
      throw new OutpostError(
        'UPDATE_TRANSFER_FAILED',
        `${this.device}: ${answer.error?.message ?? `${verb} refused`}`,
      );
    return answer.result as T;
  }
}

/** Devices whose retained status is online, read for a moment. */
async function onlineDevices(connection: ToolConnection): Promise<string[]> {
  const online = new Set<string>();
  const filter = `${topics.status(connection.site, '+')}`;
  const handler = (topic: string, payload: Buffer): void => {
    const parsed = statusPayload.safeParse(JSON.parse(payload.toString('utf8') || 'null'));
    if (!parsed.success) return;
    if (parsed.data.state === 'online') online.add(parsed.data.device);
    else online.delete(parsed.data.device);
    void topic;
  };
  connection.client.on('message', handler);
  await connection.client.subscribeAsync(filter, { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  await connection.client.unsubscribeAsync(filter);
  connection.client.off('message', handler);
  return [...online].sort();
}

async function sendTo(
  connection: ToolConnection,
  device: string,
  bundle: Bundle,
  options: PushOptions,
): Promise<void> {
  const requester = new Requester(connection.client, connection.site, device);
  await requester.ready();
  const offer = await requester.ask<{ have: number; chunkBytes: number }>(
    'update-offer',
    {
      sha256: bundle.sha256,
      size: bundle.size,
      version: bundle.version,
      allowOlder: options.allowOlder === true,
    },
    60_000,
  );
  if (offer.have > 0) options.say(`${device}: has ${offer.have} of ${bundle.size} bytes already: resuming`);
  const handle = await open(bundle.file, 'r');
  try {
    const window = Math.max(1, Math.min(32, options.window ?? 8));
    let acked = offer.have;
    const started = Date.now();
    // Rounds: send from what the box has to the end; a chunk lost on the way leaves a gap, and the box's
    // `have` (bytes without a gap) says where the next round starts.
    for (let round = 0; acked < bundle.size; round++) {
      if (round >= 5)
        throw new Error(`${device}: the bundle is still incomplete at ${acked} bytes after 5 rounds`);
      const before = acked;
      let next = acked;
      const inFlight = new Set<Promise<void>>();
      let failure: Error | undefined;
      while ((next < bundle.size || inFlight.size > 0) && failure === undefined) {
        while (next < bundle.size && inFlight.size < window) {
          const offset = next;
          const length = Math.min(offer.chunkBytes, bundle.size - offset);
          next += length;
          const data = Buffer.alloc(length);
          await handle.read(data, 0, length, offset);
          // QoS 0: a broker stores every QoS 1 message for a persistent session (the bundle would be
          // written to its store, and the card, once more: measured twice as slow); a chunk lost on the
          // way is a gap the next round fills.
          const sent: Promise<void> = requester
            .ask<{ have: number }>(
              'update-chunk',
              { sha256: bundle.sha256, offset, data: data.toString('base64') },
              30_000,
              0,
            )
            .then((answer) => {
              acked = Math.max(acked, answer.have);
              const seconds = (Date.now() - started) / 1000;
              options.progress?.(
                `${device}: ${((acked * 100) / bundle.size).toFixed(1)}% (${(acked / 1048576).toFixed(0)} of ${(bundle.size / 1048576).toFixed(0)} MiB, ${((acked - offer.have) / 1048576 / Math.max(seconds, 0.001)).toFixed(1)} MiB/s)`,
              );
            })
            .catch((error: unknown) => {
              // No reply: the chunk (or its reply) was lost; a refusal ends the transfer.
              if (!(error instanceof Error && error.message.startsWith('no reply'))) {
                failure ??= error instanceof Error ? error : new Error(String(error));
              }
            })
            .finally(() => inFlight.delete(sent));
          inFlight.add(sent);
        }
        if (inFlight.size > 0) await Promise.race(inFlight);
      }
      if (failure !== undefined) throw failure;
      if (acked === before) throw new Error(`${device}: no chunk was acknowledged in a whole round`);
    }
  } finally {
    await handle.close();
  }
  // The box reads the whole bundle again for its sha256 before it answers.
  await requester.ask('update-commit', { sha256: bundle.sha256 }, 15 * 60_000);
  options.say(`${device}: all ${bundle.size} bytes sent and checked (sha256): installing`);
}

/** Follow a box's retained `update` topic until the update ends; reconnects are the caller's. */
async function outcome(
  connection: ToolConnection,
  device: string,
  bundle: Bundle,
  options: PushOptions,
): Promise<PushResult> {
  const topic = topics.update(connection.site, device);
  const deadline = Date.now() + (options.outcomeTimeoutMs ?? 60 * 60_000);
  let lastState = '';
  return new Promise<PushResult>((resolve, reject) => {
    const timer = setInterval(() => {
      if (Date.now() > deadline) {
        finish();
        reject(
          new OutpostError(
            'UPDATE_TRANSFER_FAILED',
            `${device}: no outcome within ${(options.outcomeTimeoutMs ?? 3_600_000) / 60_000} min (last state ${lastState || 'none'})`,
          ),
        );
      }
    }, 1_000);
    const finish = (): void => {
      clearInterval(timer);
      connection.client.off('message', handler);
      connection.client.off('close', closed);
    };
    const closed = (): void => {
      finish();
      reject(new Error(`${device}: connection to the broker lost while waiting for the outcome`));
    };
    const handler = (received: string, payload: Buffer): void => {
      if (received !== topic) return;
      const parsed = updatePayload.safeParse(JSON.parse(payload.toString('utf8') || 'null'));
      if (!parsed.success) return;
      const update = parsed.data;
      const about = update.target?.version ?? null;
      // An old retained state (of an earlier update) says nothing about this one.
      const ours = about === bundle.version || update.running.version === bundle.version;
      if (!ours && update.state !== 'refused') return;
      if (update.state !== lastState) {
        lastState = update.state;
        options.say(
          `${device}: ${update.state}${update.reason ? `: ${update.reason}` : ''} (running ${update.running.version}, slot ${update.running.slot ?? '?'})`,
        );
      }
      const end =
        (update.state === 'committed' && update.running.version === bundle.version) ||
        update.state === 'rolled-back' ||
        ((update.state === 'refused' || update.state === 'failed') && about === bundle.version);
      if (end) {
        finish();
        resolve({
          device,
          outcome: update.state,
          version: update.running.version,
          reason: update.reason,
          code: update.code,
        });
      }
    };
    connection.client.on('message', handler);
    connection.client.on('close', closed);
    connection.client.subscribeAsync(topic, { qos: 1 }).catch((error: unknown) => {
      finish();
      reject(error instanceof Error ? error : new Error(String(error)));
    });
  });
}

export async function pushBundle(file: string, options: PushOptions): Promise<PushResult[]> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (error) {
    throw new OutpostError('UPDATE_BUNDLE_MALFORMED', `cannot read ${file}: ${(error as Error).message}`, {
      hint: 'give the path of a .raucb bundle',
    });
  }
  options.say(`${basename(file)}: ${(size / 1048576).toFixed(1)} MiB; computing its sha256`);
  const bundle: Bundle = { file, size, sha256: await hashFile(file), version: await bundleVersion(file) };
  options.say(`${basename(file)}: version ${bundle.version}, sha256 ${bundle.sha256}`);
  let connection = await connectTool(options);
  const devices = options.devices === 'all' ? await onlineDevices(connection) : options.devices;
  if (devices.length === 0) {
    await connection.client.endAsync();
    throw new OutpostError('USAGE_INVALID', 'no device to push to: none is online on the site', {
      hint: 'name them with --device, or check their status topics',
    });
  }
  const results: PushResult[] = [];
  try {
    for (const device of devices) {
      // Until the box has the whole bundle, a cut resumes the transfer (at most `attempts` times); after,
      // only the outcome is awaited: the box reboots into the new slot, so the link drops for minutes.
      let sent = false;
      let attempt = 0;
      const deadline = Date.now() + (options.outcomeTimeoutMs ?? 60 * 60_000);
      for (;;) {
        try {
          if (!connection.client.connected) connection = await connectTool(options);
          if (!sent) {
            await sendTo(connection, device, bundle, options);
            sent = true;
          }
          const result =
            options.wait === false
              ? { device, outcome: 'sent' as const, version: null, reason: null, code: null }
              : await outcome(connection, device, bundle, {
                  ...options,
                  outcomeTimeoutMs: deadline - Date.now(),
                });
          results.push(result);
          break;
        } catch (error) {
          attempt += 1;
          const refused =
            error instanceof OutpostError &&
            /not enough space|arrived damaged|no outcome/.test(error.message);
          if (refused || (!sent && attempt > (options.attempts ?? 20)) || Date.now() > deadline) {
            results.push({
              device,
              outcome: 'error',
              version: null,
              reason: (error as Error).message,
              code: error instanceof OutpostError ? error.code : null,
            });
            options.say(`${device}: gave up: ${(error as Error).message}`);
            break;
          }
          const wait = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
          options.say(
            `${device}: ${(error as Error).message}; ${sent ? 'waiting for the box to come back' : 'resuming where it stopped'} in ${wait / 1000} s (attempt ${attempt + 1})`,
          );
          await connection.client.endAsync(true).catch(() => undefined);
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    }
  } finally {
    await connection.client.endAsync().catch(() => undefined);
  }
  return results;
}
