// `outpost chat send` and `outpost chat tail`: a person's chat client on the command line. The broker
// stamps the sender (the identity this tool connected as) and the time; tail prints the channel's
// retained history first, then new messages as they come.
import { z } from 'zod';
import { chatPayload, type ChatPayload } from '../mqtt/contract.js';
import { topics } from '../mqtt/topics.js';
import type { ToolConnection } from '../mqtt/tool-client.js';

export async function sendChat(connection: ToolConnection, channel: string, text: string): Promise<void> {
  // QoS 1: resolves once the broker has it.
  await connection.client.publishAsync(topics.chat(connection.site, channel), JSON.stringify({ text }), {
    qos: 1,
  });
}

export function formatChat(message: ChatPayload): string {
  const time = new Date(message.at).toISOString().slice(11, 19);
  return `${time} ${message.from}: ${message.text}`;
}

export interface TailOptions {
  /** Stop after this many lines (history included); undefined: until stopped. */
  count?: number;
  /** Stop after this long; undefined: until stopped. */
  timeoutMs?: number;
  write: (line: string) => void;
}

/** Print history then live messages; resolves when `count` lines were written or the time is up. */
export async function tailChat(
  connection: ToolConnection,
  channel: string,
  options: TailOptions,
): Promise<number> {
  const { client, site } = connection;
  const live = topics.chat(site, channel);
  const history = topics.chatHistory(site, channel);
  let written = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const seen = new Set<string>();
  const print = (message: ChatPayload): void => {
    if (seen.has(message.id) || (options.count !== undefined && written >= options.count)) return;
    seen.add(message.id);
    options.write(formatChat(message));
    written += 1;
    if (options.count !== undefined && written >= options.count) done();
  };
  client.on('message', (topic, payload) => {
    try {
      const body: unknown = JSON.parse(payload.toString('utf8'));
      if (topic === history) z.array(chatPayload).parse(body).forEach(print);
      else if (topic === live) print(chatPayload.parse(body));
    } catch {
      // Not a stamped chat message (another publisher on a shared broker): not ours to print.
    }
  });
  // History first: it is retained, so it arrives right after the SUBACK.
  await client.subscribeAsync(history, { qos: 1 });
  await client.subscribeAsync(live, { qos: 1 });
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(done, options.timeoutMs);
  await finished;
  clearTimeout(timer);
  return written;
}
