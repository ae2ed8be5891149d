// A panic clip end to end against the test hub broker: the button (fake pin) or a command raises the
// alert at once, the clip is cut from a real camera pipeline's pre-roll and post-roll, the store keeps
// it, delivery sends manifest and chunks through the uplink, and the reference receiver reassembles and
// verifies it, including when the console was away, and when the box is stopped mid-delivery and
// started again on the same data dir.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClipDelivery } from '../../daemon/src/clips/delivery.js';
import { Panic } from '../../daemon/src/clips/panic.js';
import { pullClips, type PullOptions } from '../../daemon/src/clips/pull.js';
import { ClipStore, hashFile } from '../../daemon/src/clips/store.js';
import { PreRollClipSource } from '../../daemon/src/clips/mux.js';
import { PreRoll, preRollRoot } from '../../daemon/src/clips/preroll.js';
import { Camera } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { configSchema, type Config } from '../../daemon/src/config/schema.js';
import { Button } from '../../daemon/src/gpio/button.js';
import { FakePin } from '../../daemon/src/gpio/fake-pin.js';
import { Commands } from '../../daemon/src/mqtt/commands.js';
import { Uplink } from '../../daemon/src/mqtt/uplink.js';
import { connectAs, PEOPLE, pullOptions, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { testPki } from '../support/pki.js';
import { freeUdpPortPair, tempDir, until } from '../support/processes.js';

const log = pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
let hub: TestBroker | undefined;
const stops: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  await hub?.stop();
  hub = undefined;
});

// The clips come from a real camera pipeline's pre-roll (videotestsrc → x264enc), as in the daemon.
const encoders = new Encoders(log);
beforeAll(() => encoders.start(), 60_000);

const noLocalBroker = { address: () => undefined, selfCredential: () => ({ username: '', password: '' }) };

async function boxConfig(
  hubPort: number,
  dataDir: string,
  clips: Record<string, number> = {},
): Promise<Config> {
  const passwordFile = join(dataDir, 'uplink.password');
  await writeFile(passwordFile, `${PEOPLE['cam-a']?.password}\n`, { mode: 0o600 });
  return configSchema.parse({
    site: SITE,
    device: 'cam-a',
    role: 'camera',
    dataDir,
    cameras: [
      {
        name: 'cam0',
        width: 320,
        height: 240,
        framerate: 15,
        encoder: 'x264enc',
        rtp: { port: await freeUdpPortPair() },
      },
    ],
    clips: { preRollSeconds: 1, postRollSeconds: 1, chunkBytes: 4096, ...clips },
    uplink: { url: `mqtts://127.0.0.1:${hubPort}`, ca: testPki().ca, username: 'cam-a', passwordFile },
  });
}

/** The box's camera and clip path, built the way app.ts builds them. */
async function startBox(config: Config) {
  const preroll = new PreRoll(
    config.cameras,
    { root: preRollRoot(config), preRollSeconds: config.clips.preRollSeconds },
    log,
  );
  const cameras = config.cameras.map(
    (camera) => new Camera({ camera, sfu: config.sfu, encoders, log, preroll: preroll.ring(camera.name) }),
  );
  const uplink = new Uplink(config, noLocalBroker, log);
  const store = new ClipStore({ dataDir: config.dataDir, limits: config.clips, log });
  const delivery = new ClipDelivery({
    settings: { site: config.site, device: config.device, inFlightChunks: config.clips.inFlightChunks },
    store,
    channel: uplink,
    log,
  });
  const panic = new Panic({
    settings: {
      site: config.site,
      device: config.device,
      preRollSeconds: config.clips.preRollSeconds,
      postRollSeconds: config.clips.postRollSeconds,
      cameras: ['cam0'],
    },
    publisher: uplink,
    source: new PreRollClipSource(preroll, log),
    store,
    delivery,
    log,
  });
  const pin = new FakePin({ level: 1 });
  const button = new Button({
    open: () => Promise.resolve(pin),
    options: { activeLow: true, debounceMs: 20, longPressMs: 2000 },
    handlers: { press: (at) => panic.trigger('button', { at }) },
    log,
  });
  // The console's requests for missing chunks, as app.ts answers them.
  const commands = new Commands({
    site: config.site,
    device: config.device,
    channel: uplink,
    verbs: {
      'clip-chunks': (args) =>
        delivery.resend(String(args.clipId), Array.isArray(args.chunks) ? (args.chunks as number[]) : []),
    },
    log,
  });
  const services = [preroll, ...cameras, uplink, store, delivery, panic, button, commands];
  const clipPath = services.indexOf(uplink);
  for (const service of services.slice(0, clipPath)) await service.start();
  // A press gets its pre-roll once the camera has written a second or more.
  const ring = preroll.ring('cam0');
  await until(() => (ring?.files() ?? 0) >= 2, 20_000, 'the camera pre-roll to fill');
  for (const service of services.slice(clipPath)) await service.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const service of [...services].reverse()) await service.stop();
  };
  stops.push(stop);
  return { uplink, store, delivery, panic, pin, stop };
}

function console(out: string, extra: Partial<PullOptions> = {}): PullOptions {
  if (!hub) throw new Error('no hub');
  return pullOptions(hub, out, { requestAfterMs: 1000, ...extra });
}

/** Duration reported by gst-discoverer-1.0, in ms. */
async function discoveredMs(file: string): Promise<{ ms: number; text: string }> {
  const child = spawn('gst-discoverer-1.0', [file]);
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  await new Promise((resolve) => child.on('exit', resolve));
  const match = /Duration: (\d+):(\d+):(\d+\.\d+)/.exec(text);
  if (!match) throw new Error(`gst-discoverer-1.0 gave no duration:\n${text}`);
  return { ms: (Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3])) * 1000, text };
}

describe('panic clip delivery', () => {
  it('a bouncing press is one alert, and the console gets the clip, a valid MP4 with a matching sha256', async () => {
    hub = await startTestBroker();
    const box = await startBox(await boxConfig(hub.mqttsPort, await tempDir('outpost-box-')));
    await until(() => box.uplink.connected(), 10_000, 'the box to connect to the hub');
    const out = await tempDir('outpost-console-');
    const received = pullClips(console(out, { once: true, timeoutMs: 30_000 }));
    await new Promise((resolve) => setTimeout(resolve, 300)); // let the receiver subscribe

    for (let i = 0; i < 5; i += 1) {
      box.pin.set(0);
      await new Promise((resolve) => setTimeout(resolve, 2));
      box.pin.set(1);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    box.pin.set(0);
    const result = await received;
    box.pin.set(1);

    expect(result.alerts).toHaveLength(1);
    const alert = result.alerts[0];
    expect(alert).toMatchObject({ kind: 'panic', trigger: 'button', device: 'cam-a', cameras: ['cam0'] });
    expect(result.clips).toHaveLength(1);
    const clip = result.clips[0];
    expect(clip?.clipId).toBe(alert?.clipId);
    const record = box.store.get(clip?.clipId ?? '');
    expect(record?.chunks).toBeGreaterThan(2);
    expect(clip?.sha256).toBe(record?.sha256);
    expect((await hashFile(clip?.path ?? '')).sha256).toBe(record?.sha256);
    await until(
      () => box.store.get(clip?.clipId ?? '')?.delivered === true,
      5000,
      'the clip marked delivered',
    );

    // Valid MP4, within one keyframe interval (1 s) of pre + post (2 s).
    const { ms, text } = await discoveredMs(clip?.path ?? '');
    expect(Math.abs(ms - 2000), text).toBeLessThanOrEqual(1000);
    expect(text).toMatch(/H\.264/);
  });

  it('a clip that cannot be made is announced to the console, which stops waiting for it', async () => {
    hub = await startTestBroker();
    const box = await startBox(await boxConfig(hub.mqttsPort, await tempDir('outpost-box-')));
    await until(() => box.uplink.connected(), 10_000, 'the box to connect to the hub');
    const out = await tempDir('outpost-console-');
    const received = pullClips(console(out, { timeoutMs: 6000 }));
    await new Promise((resolve) => setTimeout(resolve, 300)); // let the receiver subscribe
    // A camera this box does not have: the alert goes out, the clip cannot be cut.
    const { clipId } = box.panic.trigger('cli', { cameras: ['cam9'] });
    const result = await received;
    expect(result.alerts.map((a) => [a.kind, a.clipId])).toEqual([
      ['panic', clipId],
      ['clip-failed', clipId],
    ]);
    expect(result.alerts[1]).toMatchObject({ severity: 'warning', state: 'raised', cameras: ['cam9'] });
    expect(result.failed).toEqual([
      { device: 'cam-a', clipId, message: expect.stringMatching(/no camera to record/) as string },
    ]);
    expect(result.incomplete).toEqual([]);
    expect(result.clips).toEqual([]);
  });

  it('with the console away during the press, it gets the alert and the whole clip when it comes back', async () => {
    hub = await startTestBroker();
    const out = await tempDir('outpost-console-');
    // The console's persistent session exists, then the console goes away.
    await pullClips(console(out, { timeoutMs: 200 }));
    const box = await startBox(await boxConfig(hub.mqttsPort, await tempDir('outpost-box-')));
    const { clipId } = box.panic.trigger('mqtt');
    await until(() => box.store.get(clipId)?.delivered === true, 20_000, 'the clip delivered to the hub');

    const result = await pullClips(console(out, { once: true, timeoutMs: 20_000 }));
    expect(result.alerts.map((a) => a.clipId)).toEqual([clipId]);
    expect(result.clips.map((c) => c.clipId)).toEqual([clipId]);
    expect(result.clips[0]?.sha256).toBe(box.store.get(clipId)?.sha256);
  });

  it('a second press during a clip links a new clip; both alerts and both clips arrive', async () => {
    hub = await startTestBroker();
    const box = await startBox(await boxConfig(hub.mqttsPort, await tempDir('outpost-box-')));
    const out = await tempDir('outpost-console-');
    await pullClips(console(out, { timeoutMs: 200 }));
    const first = box.panic.trigger('mqtt');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = box.panic.trigger('cli');
    expect(second.relatedClipId).toBe(first.clipId);
    await until(
      () =>
        box.store.get(first.clipId)?.delivered === true && box.store.get(second.clipId)?.delivered === true,
      20_000,
      'both clips delivered',
    );
    const result = await pullClips(console(out, { timeoutMs: 3000 }));
    expect(result.alerts.map((a) => [a.clipId, a.relatedClipId])).toEqual([
      [first.clipId, undefined],
      [second.clipId, first.clipId],
    ]);
    expect(result.clips.map((c) => c.clipId).sort()).toEqual([first.clipId, second.clipId].sort());
  });

  it('stopped mid-delivery with the hub away, a new box on the same data dir completes the delivery', async () => {
    hub = await startTestBroker();
    const out = await tempDir('outpost-console-');
    await pullClips(console(out, { timeoutMs: 200 }));
    const dataDir = await tempDir('outpost-box-');
    const config = await boxConfig(hub.mqttsPort, dataDir, { chunkBytes: 1024, inFlightChunks: 1 });
    const first = await startBox(config);
    await until(() => first.uplink.connected(), 10_000, 'the box to connect');
    // Cut the hub the moment chunk 3 passes it: the rest of the clip is not delivered yet.
    const watcher = await connectAs(hub, 'console');
    let hubDown: Promise<void> | undefined;
    watcher.on('message', (topic) => {
      if (topic.endsWith('/chunk/3')) hubDown ??= hub?.broker.stop();
    });
    await watcher.subscribeAsync(`outpost/v1/${SITE}/cam-a/clip/+/chunk/+`, { qos: 1 });
    const { clipId } = first.panic.trigger('button');
    await until(() => hubDown !== undefined, 20_000, 'chunk 3 at the hub');
    await hubDown;
    watcher.end(true);
    const sentBefore = first.store.get(clipId);
    expect(sentBefore?.delivered).toBe(false);
    expect(sentBefore?.chunks).toBeGreaterThan(10);
    await first.stop();

    await hub.restart();
    const second = await startBox(config);
    expect(second.delivery.pendingClips()).toEqual([clipId]);
    await until(
      () => second.store.get(clipId)?.delivered === true,
      30_000,
      'delivery to complete after the restart',
    );
    const said: string[] = [];
    const result = await pullClips(
      console(out, { once: true, timeoutMs: 20_000, say: (line) => said.push(line) }),
    );
    expect(
      result.clips.map((c) => c.clipId),
      said.join('\n'),
    ).toEqual([clipId]);
    expect(result.clips[0]?.sha256).toBe(second.store.get(clipId)?.sha256);
  });
});
