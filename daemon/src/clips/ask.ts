// `outpost clip`: ask the running daemon on this box for a panic clip. It connects to the daemon's
// broker on loopback as local-admin (password from the data dir, readable only by the daemon's user),
// publishes `cmd/clip` with `via: cli`, and waits for the reply: the alert is already out by then.
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import { replyPayload } from '../mqtt/contract.js';
import { connectLocal } from '../mqtt/tool-client.js';
import { topics } from '../mqtt/topics.js';

export async function askDaemonForClip(
  config: Pick<Config, 'site' | 'device' | 'dataDir' | 'broker'>,
  options: { cameras?: string[]; timeoutMs?: number } = {},
): Promise<{ clipId: string; cameras: string[]; relatedClipId?: string }> {
  const client = await connectLocal(config);
  try {
    const id = randomUUID();
    const replyTopic = topics.reply(config.site, config.device, 'clip');
    const reply = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new OutpostError(
              'START_FAILED',
              `no reply on ${replyTopic} within ${options.timeoutMs ?? 5000} ms`,
            ),
          ),
        options.timeoutMs ?? 5000,
      );
      client.on('message', (_topic, payload) => {
        const parsed = replyPayload.safeParse(JSON.parse(payload.toString('utf8')));
        if (!parsed.success || parsed.data.id !== id) return;
        clearTimeout(timer);
        if (parsed.data.ok) resolve(parsed.data.result);
        else
          reject(
            new OutpostError(
              'START_FAILED',
              `the daemon refused: ${parsed.data.error?.message ?? 'no reason'}`,
            ),
          );
      });
    });
    await client.subscribeAsync(replyTopic, { qos: 1 });
    await client.publishAsync(
      topics.cmd(config.site, config.device, 'clip'),
      JSON.stringify({
        id,
        args: { via: 'cli', ...(options.cameras?.length ? { cameras: options.cameras } : {}) },
      }),
      { qos: 1 },
    );
    return (await reply) as { clipId: string; cameras: string[]; relatedClipId?: string };
  } finally {
    await client.endAsync();
  }
}
