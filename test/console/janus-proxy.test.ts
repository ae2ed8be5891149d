// The hub's Janus proxy on its own, against Debian's Janus: the hub long-polls each Janus session for
// its page (it must, to see the offers `view` waits for), so it must also end the sessions whose page
// has gone, and tell a polling page when Janus has gone.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JanusProxy } from '../../daemon/src/console/janus-proxy.js';
import type { Session } from '../../daemon/src/console/sessions.js';
import type { Identity } from '../../daemon/src/mqtt/identities.js';
import { janusServer, type TestJanus } from '../support/janus.js';

const ABANDONED_MS = 1000;
let janus: TestJanus;
let server: Server;
let origin: string;
let proxy: JanusProxy;
const login: Session = {
  id: 'test',
  identity: { name: 'ops', role: 'console' } satisfies Identity,
  createdAt: Date.now(),
  lastUsedAt: Date.now(),
  onEnd: new Set(),
};

beforeAll(async () => {
  janus = await janusServer();
  proxy = new JanusProxy({
    url: janus.url,
    apiSecret: undefined,
    log: pino({ level: 'silent' }),
    abandonedMs: ABANDONED_MS,
  });
  server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    void proxy.handle(request, response, login, path.slice('/janus'.length));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 30_000);

afterAll(async () => {
  for (const end of login.onEnd) end();
  server?.close();
  await janus?.stop();
});

async function create(): Promise<number> {
  const reply = await fetch(`${origin}/janus`, {
    method: 'POST',
    body: JSON.stringify({ janus: 'create', transaction: 'c' }),
  });
  const id = ((await reply.json()) as { data?: { id?: number } }).data?.id;
  if (typeof id !== 'number') throw new Error('no session id');
  return id;
}

/** Asked of Janus itself, not through the proxy: does the session still exist? */
async function existsAtJanus(id: number): Promise<boolean> {
  const reply = await fetch(`${janus.url}/${id}`, {
    method: 'POST',
    body: JSON.stringify({ janus: 'keepalive', transaction: 'k' }),
  });
  return ((await reply.json()) as { janus: string }).janus === 'ack';
}

describe('janus proxy', () => {
  it('destroys a Janus session whose page stopped polling, and keeps one whose page polls', async () => {
    const [gone, polled] = [await create(), await create()];
    const poll = new AbortController();
    // The page's long poll, held open (Janus would answer it within 30 s).
    const held = fetch(`${origin}/janus/${polled}?maxev=10`, { signal: poll.signal }).catch(() => undefined);
    try {
      await expect.poll(() => existsAtJanus(gone), { timeout: 4 * ABANDONED_MS, interval: 200 }).toBe(false);
      expect(await existsAtJanus(polled)).toBe(true);
    } finally {
      poll.abort();
      await held;
    }
  });

  it('holds at most 32 Janus sessions per login; a forgotten session leaves no log-out callback behind', async () => {
    await expect.poll(() => proxy.sessions, { timeout: 6 * ABANDONED_MS, interval: 200 }).toBe(0);
    expect(login.onEnd.size).toBe(0);
    const polls = new AbortController();
    const held: Array<Promise<unknown>> = [];
    try {
      for (let i = 0; i < 32; i++) {
        const id = await create();
        held.push(fetch(`${origin}/janus/${id}?maxev=10`, { signal: polls.signal }).catch(() => undefined));
      }
      const refused = await fetch(`${origin}/janus`, {
        method: 'POST',
        body: JSON.stringify({ janus: 'create', transaction: 'c' }),
      });
      expect(refused.status).toBe(429);
      expect(login.onEnd.size).toBe(32);
    } finally {
      polls.abort();
      await Promise.all(held);
    }
    // Nobody polls any more: each is destroyed as abandoned, and its log-out callback goes with it.
    await expect.poll(() => proxy.sessions, { timeout: 6 * ABANDONED_MS, interval: 200 }).toBe(0);
    expect(login.onEnd.size).toBe(0);
  });

  it("tells a page's long poll at once when Janus goes away", async () => {
    const id = await create();
    const polled = fetch(`${origin}/janus/${id}?maxev=10`).then(
      async (reply) => (await reply.json()) as Array<{ janus: string; error?: { code?: number } }>,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stoppedAt = Date.now();
    await janus.stop();
    const events = await polled;
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    expect(events[0]).toMatchObject({ janus: 'error', error: { code: 458 } });
    await janus.start();
  }, 30_000);
});
