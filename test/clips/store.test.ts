// The clip store's limits: the quota removes the oldest delivered clips only, undelivered clips stay
// until the disk itself is in danger (then a clip-store alert says so), and records survive a restart;
// a clip whose keep was cut short by a kill is either whole in the store or not there at all.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ClipStore, type ClipStoreLimits } from '../../daemon/src/clips/store.js';
import { tempDir } from '../support/processes.js';

const log = pino({ level: 'silent' });
const MiB = 1024 * 1024;
const limits: ClipStoreLimits = {
  quotaBytes: 3 * MiB,
  maxAgeDays: 30,
  minFreeBytes: 0,
  chunkBytes: 128 * 1024,
};

async function keepClip(store: ClipStore, id: string, bytes = MiB) {
  const path = join(store.tempDir, `${id}.mp4`);
  await writeFile(path, randomBytes(bytes));
  return store.keep({ id, path, cameras: ['cam0'], trigger: 'cli', durationMs: 2000, startAt: 1, endAt: 2 });
}

describe('clip store', () => {
  it('filling the store past its quota removes the oldest delivered clips only', async () => {
    const store = new ClipStore({ dataDir: await tempDir('outpost-clips-'), limits, log });
    await store.start();
    for (const id of ['a', 'b', 'c']) await keepClip(store, id);
    await store.update('a', { delivered: true });
    await store.update('c', { delivered: true });
    // b is undelivered and older than c: c goes before b would; a (oldest delivered) goes first.
    await keepClip(store, 'd');
    expect(store.list().map((r) => r.id)).toEqual(['b', 'c', 'd']);
    expect(existsSync(store.filePath('a'))).toBe(false);
    await keepClip(store, 'e');
    expect(store.list().map((r) => r.id)).toEqual(['b', 'd', 'e']);
    // Only undelivered clips left and over quota: kept, none deleted.
    await keepClip(store, 'f');
    expect(store.list().map((r) => r.id)).toEqual(['b', 'd', 'e', 'f']);
    expect(store.totalBytes()).toBeGreaterThan(limits.quotaBytes);
    await store.stop();
  });

  it('delivered clips past the age limit are deleted; undelivered ones are kept', async () => {
    const dataDir = await tempDir('outpost-clips-');
    const store = new ClipStore({ dataDir, limits: { ...limits, maxAgeDays: 0.001 }, log });
    await store.start();
    await keepClip(store, 'old-delivered', 1000);
    await keepClip(store, 'old-undelivered', 1000);
    await store.update('old-delivered', { delivered: true });
    await new Promise((resolve) => setTimeout(resolve, 100)); // 0.001 days is 86 s: fake the age instead
    const record = store.get('old-delivered');
    if (record) record.keptAt -= 200_000;
    const other = store.get('old-undelivered');
    if (other) other.keptAt -= 200_000;
    await store.enforce();
    expect(store.list().map((r) => r.id)).toEqual(['old-undelivered']);
    await store.stop();
  });

  it('when the disk is in danger, undelivered clips go too, oldest first, and an alert says so', async () => {
    let free = 10 * MiB;
    const alerts: Array<[string, string]> = [];
    const store = new ClipStore({
      dataDir: await tempDir('outpost-clips-'),
      limits: { ...limits, minFreeBytes: 5 * MiB, quotaBytes: 100 * MiB },
      log,
      hooks: {
        freeBytes: () => Promise.resolve(free),
        diskDanger: (state, message) => alerts.push([state, message]),
      },
    });
    await store.start();
    await keepClip(store, 'u1');
    await keepClip(store, 'u2');
    await keepClip(store, 'u3');
    expect(alerts).toEqual([]);
    free = 3.5 * MiB; // something else filled the disk
    await store.enforce();
    expect(store.list().map((r) => r.id)).toEqual(['u3']);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.[0]).toBe('raised');
    expect(alerts[0]?.[1]).toMatch(/deleted undelivered clips u1, u2/);
    free = 20 * MiB;
    await store.enforce();
    expect(alerts.at(-1)?.[0]).toBe('cleared');
    await store.stop();
  });

  it('records and delivery progress survive a restart; half-written files are cleared', async () => {
    const dataDir = await tempDir('outpost-clips-');
    const first = new ClipStore({ dataDir, limits, log });
    await first.start();
    const record = await keepClip(first, 'x', 300 * 1024);
    expect(record.chunks).toBe(3);
    await first.update('x', { manifestAcked: true, ackedChunks: 2 });
    await writeFile(join(first.tempDir, 'half.mp4'), 'partial');
    await first.stop();
    const second = new ClipStore({ dataDir, limits, log });
    await second.start();
    expect(second.get('x')).toMatchObject({
      manifestAcked: true,
      ackedChunks: 2,
      delivered: false,
      sha256: record.sha256,
    });
    expect(existsSync(join(second.tempDir, 'half.mp4'))).toBe(false);
    await second.stop();
  });

  it('a kill between a clip record and its video leaves no clip: the record is dropped at start', async () => {
    const dataDir = await tempDir('outpost-clips-');
    const first = new ClipStore({ dataDir, limits, log });
    await first.start();
    await keepClip(first, 'y', 1000);
    await first.stop();
    // keep() writes the record, then renames the video in: undo the rename, as a kill before it would.
    await rename(first.filePath('y'), join(first.tempDir, 'y.mp4'));
    const second = new ClipStore({ dataDir, limits, log });
    await second.start();
    expect(second.get('y')).toBeUndefined();
    expect((await readdir(second.dir)).filter((name) => name.startsWith('y'))).toEqual([]);
    await second.stop();
  });
});
