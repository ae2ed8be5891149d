// An HTTP request's body, read whole up to a limit: the console's API and its Janus proxy take only
// small JSON bodies, and a larger one is refused rather than buffered.
import type { IncomingMessage } from 'node:http';

/** The body as text, or undefined once it passes `limit` bytes. */
export async function readBody(request: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
