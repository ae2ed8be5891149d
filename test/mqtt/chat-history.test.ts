// ChatHistory's choice of a channel to give up when all are in use, against a wall clock that steps
// (a Pi sets its clock after boot): idleness is measured on the monotonic clock.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChatHistory } from '../../daemon/src/mqtt/chat-history.js';

const HOUR = 3_600_000;

function history(now: () => number) {
  const published: string[] = [];
  const chat = new ChatHistory({
    site: 'plant',
    limit: 10,
    publish: (packet) => {
      published.push(`${packet.topic} ${packet.payload.length}`);
      return Promise.resolve();
    },
    maxChannels: 2,
    intervalMs: 0,
    idleMs: HOUR,
    now,
  });
  return { chat, published };
}

const message = (text: string, at: number) => ({ id: text, from: 'alice', role: 'staff' as const, text, at });

async function* asAsync<T>(items: T[]): AsyncIterable<T> {
  for (const item of items) yield await Promise.resolve(item);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('chat channels given up when all are in use', () => {
  it('a busy channel is not given up when the wall clock steps a year ahead', async () => {
    let monotonic = 0;
    const { chat } = history(() => monotonic);
    chat.append('one', message('a', Date.now()));
    chat.append('two', message('b', Date.now()));
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 365 * 24 * HOUR);
    monotonic += 60_000;
    expect(chat.admit('three')).toMatchObject({ ok: false });
    monotonic += HOUR;
    expect(chat.admit('three')).toEqual({ ok: true, evicted: 'one' });
    await chat.stop();
  });

  it('a loaded channel whose last stamp is in the future (the clock stepped back) counts as busy', async () => {
    const { chat } = history(() => 0);
    const future = Date.now() + 30 * 24 * HOUR;
    const old = Date.now() - 2 * HOUR;
    const retained = [
      { topic: 'outpost/v1/plant/chat/ahead/history', payload: JSON.stringify([message('x', future)]) },
      { topic: 'outpost/v1/plant/chat/quiet/history', payload: JSON.stringify([message('y', old)]) },
    ];
    await chat.load(asAsync(retained));
    expect(chat.admit('new')).toEqual({ ok: true, evicted: 'quiet' });
    chat.append('new', message('z', Date.now()));
    expect(chat.admit('newer')).toMatchObject({ ok: false });
    await chat.stop();
  });
});
