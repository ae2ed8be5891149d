// Receiving a bundle over the LAN: the receiver's verbs (resumable after a restart, in order, checked by
// sha256) and `outpost update push` against a real daemon through its broker, with the retained
// `update` topic following the transfer.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { updatePayload } from '../../daemon/src/mqtt/contract.js';
import { localAdminFile } from '../../daemon/src/mqtt/local-admin.js';
import { BundleReceiver, CHUNK_BYTES } from '../../daemon/src/update/receiver.js';
import { daemonConfig, runCli, runCliToEnd, until } from '../support/processes.js';

const log = pino({ level: 'silent' });
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('bundle receiver', () => {
  let dir: string;
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function receiver(progress: Array<number | null> = []) {
    return new BundleReceiver({
      dir,
      reserveBytes: 0,
      log,
      progress: (_version, percent) => progress.push(percent),
    });
  }

  async function send(r: BundleReceiver, bundle: Buffer, from: number, to: number, sum = sha256(bundle)) {
    const verbs = r.verbs();
    for (let offset = from; offset < to; offset += CHUNK_BYTES) {
      const data = bundle.subarray(offset, Math.min(offset + CHUNK_BYTES, to));
      await verbs['update-chunk']?.({ sha256: sum, offset, data: data.toString('base64') });
    }
  }

  /** A receiver in a new dir, offered a bundle of three chunks of random bytes. */
  async function offeredThreeChunks() {
    dir = await mkdtemp(join(tmpdir(), 'outpost-receiver-'));
    const bundle = randomBytes(CHUNK_BYTES * 3);
    const sum = sha256(bundle);
    const r = receiver();
    await r.verbs()['update-offer']?.({ sha256: sum, size: bundle.length });
    return { bundle, sum, r };
  }

  it('resumes from what reached the disk after the daemon restarted, and hands the checked bundle on', async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-receiver-'));
    const bundle = randomBytes(CHUNK_BYTES * 70 + 1234); // ~11 MiB: one fsync point at 8 MiB
    const sum = sha256(bundle);
    const progress: Array<number | null> = [];
    const first = receiver(progress);
    const offer = { sha256: sum, size: bundle.length, version: '2.0.0' };
    expect(await first.verbs()['update-offer']?.(offer)).toEqual({ have: 0, chunkBytes: CHUNK_BYTES });
    await send(first, bundle, 0, CHUNK_BYTES * 60);
    await first.close(); // the daemon stops (or the box loses power after the last fsync)
    const second = receiver(progress);
    const { have } = (await second.verbs()['update-offer']?.(offer)) as { have: number };
    expect(have).toBe(CHUNK_BYTES * 60);
    await send(second, bundle, have, bundle.length);
    expect(await second.verbs()['update-commit']?.({ sha256: sum })).toEqual({ queued: true });
    const ready = await readFile(join(dir, 'ready', `${sum}.raucb`));
    expect(sha256(ready)).toBe(sum);
    expect(JSON.parse(await readFile(join(dir, 'ready', `${sum}.raucb.json`), 'utf8'))).toMatchObject({
      allowOlder: false,
      version: '2.0.0',
    });
    expect(await readdir(join(dir, 'incoming'))).toEqual([]);
    expect(progress.at(-1)).toBeNull();
    expect(progress.filter((p) => p !== null).length).toBeGreaterThan(50);
  });

  it('takes chunks out of order, counting only bytes without a gap', async () => {
    const { bundle, sum, r } = await offeredThreeChunks();
    const chunk = (n: number) =>
      r.verbs()['update-chunk']?.({
        sha256: sum,
        offset: n * CHUNK_BYTES,
        data: bundle.subarray(n * CHUNK_BYTES, (n + 1) * CHUNK_BYTES).toString('base64'),
      });
    expect(await chunk(1)).toEqual({ have: 0 });
    expect(await chunk(2)).toEqual({ have: 0 });
    expect(await chunk(0)).toEqual({ have: bundle.length });
    expect(await r.verbs()['update-commit']?.({ sha256: sum })).toEqual({ queued: true });
    expect(sha256(await readFile(join(dir, 'ready', `${sum}.raucb`)))).toBe(sum);
  });

  it('refuses a chunk far past the gap, and deletes a bundle that arrives damaged', async () => {
    const { bundle, sum, r } = await offeredThreeChunks();
    await expect(
      r.verbs()['update-chunk']?.({ sha256: sum, offset: 65 * CHUNK_BYTES, data: 'AAAA' }),
    ).rejects.toThrow(/too far ahead: the bundle is complete up to 0/);
    const damaged = Buffer.from(bundle);
    damaged[100] = (damaged[100] ?? 0) ^ 1;
    await send(r, damaged, 0, damaged.length, sum);
    await expect(r.verbs()['update-commit']?.({ sha256: sum })).rejects.toThrow(/arrived damaged.*deleted/);
    expect(existsSync(join(dir, 'ready'))).toBe(false);
    expect(await readdir(join(dir, 'incoming'))).toEqual([]);
  });
});

describe('outpost update push', () => {
  it('sends a bundle to a running daemon, which reports receiving on its update topic and hands it on', async () => {
    const { file, brokerPort, dataDir } = await daemonConfig();
    const daemon = runCli(['run', '--config', file]);
    try {
      await daemon.waitForLog((line) => line.msg === 'outpost running');
      const client = await connectAsync(`mqtt://127.0.0.1:${brokerPort}`, {
        username: 'local-admin',
        password: (await readFile(localAdminFile(dataDir), 'utf8')).trim(),
      });
      const states: string[] = [];
      client.on('message', (_topic, payload) =>
        states.push(updatePayload.parse(JSON.parse(payload.toString())).state),
      );
      await client.subscribeAsync('outpost/v1/test/box1/update', { qos: 1 });
      await until(() => states.includes('idle'), 10_000, 'the retained idle update state');
      const bundle = randomBytes(3 * 1024 * 1024);
      const path = join(dataDir, 'outpost-amd64-2.0.0.raucb');
      await writeFile(path, bundle);
      const result = await runCliToEnd([
        'update',
        'push',
        path,
        '--device',
        'box1',
        '--config',
        file,
        '--no-wait',
      ]);
      expect(result.code, result.stderr + result.stdout).toBe(0);
      expect(result.stdout).toMatch(/version 2\.0\.0/);
      expect(result.stdout).toMatch(/box1: all 3145728 bytes sent and checked \(sha256\)/);
      const ready = await readFile(join(dataDir, 'update/ready', `${sha256(bundle)}.raucb`));
      expect(ready.equals(bundle)).toBe(true);
      await until(
        () => states.lastIndexOf('receiving') > 0 && states.at(-1) === 'idle',
        10_000,
        'receiving, then idle',
      );
      await client.endAsync();
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.exited();
    }
  });
});
