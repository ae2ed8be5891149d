// The clip receiver keeps what it was told on disk: a clip known only from its alert survives a
// restart (and a kill -9 of `outpost clips pull`) and is listed as unresolved with its age; a manifest
// that does not come is asked for with `cmd/clip-chunks` and an empty list; requests back off and wait
// while the box is offline; a clip-failed is kept in the archive in the clip's place. A box is an
// MQTT client of the test hub publishing as `cam-a`; the receiver is a console at the same hub.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pullClips, type PullOptions } from '../../daemon/src/clips/pull.js';
import { ClipReceiver, type ReceiverLink } from '../../daemon/src/clips/receiver.js';
import { hashFile } from '../../daemon/src/clips/store.js';
import { connectAs, PEOPLE, pullOptions, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { testPki } from '../support/pki.js';
import { cliRuns, tempDir, until, writeTemp } from '../support/processes.js';

const { start, stopAll } = cliRuns();
let hub: TestBroker | undefined;
const clients: MqttClient[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await stopAll();
  for (const client of clients.splice(0)) await client.endAsync(true);
  await hub?.stop();
  hub = undefined;
});

const P = `outpost/v1/${SITE}/cam-a`;

function alert(clipId: string, kind: 'panic' | 'clip-failed' = 'panic', at = Date.now()) {
  return JSON.stringify({
    at,
    bootId: '00000000-0000-4000-8000-000000000000',
    seq: 1,
    id: kind === 'panic' ? clipId : `${clipId}-failed`,
    device: 'cam-a',
    kind,
    severity: kind === 'panic' ? 'critical' : 'warning',
    state: 'raised',
    message: kind === 'panic' ? 'panic (mqtt)' : `no clip for panic ${clipId}: the camera is gone`,
    clipId,
    cameras: ['cam0'],
    trigger: 'mqtt',
  });
}

/** A clip of `chunks` × 1000 bytes and its manifest. */
function clipOf(clipId: string, chunks: number) {
  const bytes = Buffer.alloc(chunks * 1000);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = (i * 7) % 251;
  const sha256 = createHashHex(bytes);
  const manifest = JSON.stringify({
    at: Date.now(),
    bootId: '00000000-0000-4000-8000-000000000000',
    seq: 2,
    clipId,
    device: 'cam-a',
    cameras: ['cam0'],
    sizeBytes: bytes.length,
    sha256,
    durationMs: 2000,
    chunkBytes: 1000,
    chunks,
    startAt: Date.now() - 2000,
    endAt: Date.now(),
  });
  return { bytes, sha256, manifest };
}

function createHashHex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The box: publishes as cam-a at the hub, and sees the requests sent to it. */
async function fakeBox(broker: TestBroker) {
  const client = await connectAs(broker, 'cam-a');
  clients.push(client);
  const requests: { id: string; clipId: string; chunks: number[] }[] = [];
  client.on('message', (_topic, payload) => {
    const { id, args } = JSON.parse(payload.toString()) as {
      id: string;
      args: { clipId: string; chunks: number[] };
    };
    requests.push({ id, ...args });
  });
  await client.subscribeAsync(`${P}/cmd/clip-chunks`, { qos: 1 });
  return { client, requests };
}

/** cam-a's status message, as its daemon publishes it. */
function camAStatus(seq: number, state: 'online' | 'offline'): string {
  const status = {
    at: Date.now(),
    bootId: 'bbbbbbbb',
    seq,
    state,
    device: 'cam-a',
    role: 'camera',
    version: '0',
  };
  return JSON.stringify(status);
}

function consoleAt(broker: TestBroker, out: string, extra: Partial<PullOptions> = {}): PullOptions {
  return pullOptions(broker, out, { clientId: 'console.receiver-test', ...extra });
}

describe('the clip receiver remembers', () => {
  it('a clip known only from its alert survives a restart of the receiver, listed as unresolved with its age', async () => {
    hub = await startTestBroker();
    const box = await fakeBox(hub);
    const out = await tempDir('outpost-console-');
    const clipId = '20261124T191028Z-aaaaaa';
    const pressedAt = Date.now() - 5000;
    const said: string[] = [];
    const first = pullClips(consoleAt(hub, out, { timeoutMs: 1500, say: (l) => said.push(l) }));
    await until(() => said.some((l) => l.startsWith('listening')), 10_000, 'the receiver to subscribe');
    await box.client.publishAsync(`${P}/alert`, alert(clipId, 'panic', pressedAt), { qos: 1 });
    const firstResult = await first;
    expect(firstResult.alerts.map((a) => a.clipId)).toEqual([clipId]);

    // The second run hears nothing new: what it knows of the clip, it read from its own disk.
    const again: string[] = [];
    const second = await pullClips(consoleAt(hub, out, { timeoutMs: 500, say: (l) => again.push(l) }));
    expect(second.alerts).toEqual([]);
    expect(second.incomplete).toEqual([{ device: 'cam-a', clipId, have: 0, of: undefined }]);
    expect(second.unresolved[0]).toMatchObject({ clipId, waitingFor: 'manifest', pressedAt });
    expect(second.unresolved[0]?.ageMs).toBeGreaterThanOrEqual(500);
    expect(again.join('\n')).toMatch(
      new RegExp(
        `unresolved from an earlier run:\\n  cam-a/${clipId}: waiting for its manifest; first heard of \\d+ s ago`,
      ),
    );
  });

  it('outpost clips pull killed with -9 right after an alert still knows the clip at its next start', async () => {
    hub = await startTestBroker();
    const box = await fakeBox(hub);
    const out = await tempDir('outpost-console-');
    const passwordFile = await writeTemp('console.password', `${PEOPLE.console?.password}\n`);
    const args = [
      'clips', 'pull', '--out', out, '--url', `mqtts://127.0.0.1:${hub.mqttsPort}`, '--site', SITE,
      '--username', 'console', '--password-file', passwordFile, '--ca', testPki().ca,
    ]; // prettier-ignore
    const first = start([...args, '--timeout', '60']);
    await until(() => first.stdout().includes('listening for clips'), 20_000, 'the receiver to subscribe');
    const clipId = '20261124T191028Z-bbbbbb';
    await box.client.publishAsync(`${P}/alert`, alert(clipId), { qos: 1 });
    await until(() => first.stdout().includes(`(clip ${clipId})`), 10_000, 'the alert at the receiver');
    first.child.kill('SIGKILL');
    await first.exited();

    const second = start([...args, '--timeout', '2']);
    const { code } = await second.exited();
    expect(second.stdout()).toMatch(new RegExp(`cam-a/${clipId}: waiting for its manifest`));
    expect(second.stdout()).toMatch(new RegExp(`incomplete: cam-a/${clipId}`));
    expect(code).toBe(1);
  });

  it('asks for a manifest that has not come, and completes the clip once the box sends it', async () => {
    hub = await startTestBroker();
    const box = await fakeBox(hub);
    const out = await tempDir('outpost-console-');
    const clipId = '20261124T191028Z-cccccc';
    const { bytes, sha256, manifest } = clipOf(clipId, 3);
    // The manifest and chunks went out while nobody was subscribed: the hub never queued them.
    const said: string[] = [];
    const received = pullClips(
      consoleAt(hub, out, { once: true, timeoutMs: 20_000, manifestAfterMs: 500, say: (l) => said.push(l) }),
    );
    await until(() => said.some((l) => l.startsWith('listening')), 10_000, 'the receiver to subscribe');
    await box.client.publishAsync(`${P}/alert`, alert(clipId), { qos: 1 });
    await until(() => box.requests.length > 0, 10_000, 'a request for the manifest');
    expect(box.requests[0]).toMatchObject({ clipId, chunks: [] });
    // The box answers as delivery.resend does: the manifest, then the chunks.
    await box.client.publishAsync(`${P}/clip/${clipId}`, manifest, { qos: 1 });
    for (let n = 0; n < 3; n += 1)
      await box.client.publishAsync(
        `${P}/clip/${clipId}/chunk/${n}`,
        bytes.subarray(n * 1000, n * 1000 + 1000),
        {
          qos: 1,
        },
      );
    const result = await received;
    expect(result.clips.map((c) => c.clipId)).toEqual([clipId]);
    expect((await hashFile(join(out, 'cam-a', `${clipId}.mp4`))).sha256).toBe(sha256);
    expect(said.join('\n')).toMatch(new RegExp(`cam-a/${clipId}: asking for the manifest`));
  });
});

/** A link without a broker: the test hands messages in and sees what is published. */
function memoryLink() {
  let handler: ((topic: string, payload: Buffer) => Promise<void>) | undefined;
  const published: { topic: string; payload: { id: string; args: { clipId: string; chunks: number[] } } }[] =
    [];
  const link: ReceiverLink = {
    open(_filters, handle) {
      handler = handle;
      return Promise.resolve();
    },
    publish(topic, payload) {
      published.push({ topic, payload: JSON.parse(payload) as (typeof published)[number]['payload'] });
    },
    close() {
      handler = undefined;
      return Promise.resolve();
    },
  };
  const deliver = (topic: string, payload: string | Buffer) =>
    handler ? handler(topic, Buffer.from(payload)) : Promise.reject(new Error('link closed'));
  return { link, published, deliver };
}

describe('the clip receiver asks', () => {
  it('asks again with the wait doubled each time, and not while the box says it is offline', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout', 'Date'] });
    const { link, published, deliver } = memoryLink();
    const out = await tempDir('outpost-console-');
    const receiver = new ClipReceiver({
      site: SITE,
      dir: out,
      link,
      chunksAfterMs: 1000,
      manifestAfterMs: 10_000,
      maxAskIntervalMs: 40_000,
    });
    await receiver.start();
    const clipId = '20261124T191028Z-dddddd';
    await deliver(`${P}/alert`, alert(clipId));
    const askedAt: number[] = [];
    const t0 = Date.now();
    for (let s = 0; s < 200; s += 1) {
      const before = published.length;
      await vi.advanceTimersByTimeAsync(1000);
      if (published.length > before) askedAt.push(Math.round((Date.now() - t0) / 1000));
    }
    // 10 s, then 20, 40, 40, 40 … between requests.
    expect(askedAt.slice(0, 5)).toEqual([10, 30, 70, 110, 150]);
    expect(published[0]).toMatchObject({
      topic: `${P}/cmd/clip-chunks`,
      payload: { args: { clipId, chunks: [] } },
    });

    // Offline: no requests (they would queue in its session); back online: asked again after the wait.
    await deliver(`${P}/status`, camAStatus(3, 'offline'));
    const whileOffline = published.length;
    await vi.advanceTimersByTimeAsync(200_000);
    expect(published.length).toBe(whileOffline);
    await deliver(`${P}/status`, camAStatus(4, 'online'));
    await vi.advanceTimersByTimeAsync(45_000);
    expect(published.length).toBe(whileOffline + 1);

    // The box's answer is kept with the clip.
    const last = published.at(-1);
    await deliver(
      `${P}/reply/clip-chunks`,
      JSON.stringify({
        at: Date.now(),
        bootId: 'bbbbbbbb',
        seq: 5,
        id: last?.payload.id,
        ok: false,
        error: { code: 'BAD_ARGUMENTS', message: `no clip ${clipId} on this box` },
      }),
    );
    expect(receiver.unresolved()[0]).toMatchObject({ clipId, boxSays: `no clip ${clipId} on this box` });
    await receiver.stop();
    const state = JSON.parse(
      await readFile(join(out, '.partial', 'cam-a', clipId, 'state.json'), 'utf8'),
    ) as {
      boxSays?: string;
    };
    expect(state.boxSays).toBe(`no clip ${clipId} on this box`);
  });

  it('keeps a clip-failed in the archive in the clip’s place; a late copy of its alert does not reopen it', async () => {
    const { link, published, deliver } = memoryLink();
    const out = await tempDir('outpost-console-');
    const failed: string[] = [];
    const receiver = new ClipReceiver({
      site: SITE,
      dir: out,
      link,
      manifestAfterMs: 50,
      events: { failed: (clip) => failed.push(clip.clipId) },
    });
    await receiver.start();
    const clipId = '20261124T191028Z-eeeeee';
    await deliver(`${P}/alert`, alert(clipId));
    await deliver(`${P}/alert`, alert(clipId, 'clip-failed'));
    expect(failed).toEqual([clipId]);
    const kept = JSON.parse(await readFile(join(out, 'cam-a', `${clipId}.failed.json`), 'utf8')) as {
      kind: string;
    };
    expect(kept.kind).toBe('clip-failed');
    await deliver(`${P}/alert`, alert(clipId)); // QoS 1 may bring the panic alert again
    expect(receiver.unresolved()).toEqual([]);
    expect(existsSync(join(out, '.partial', 'cam-a', clipId))).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(published).toEqual([]);
    await receiver.stop();
  });
});
