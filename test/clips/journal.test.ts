// Clips in progress survive the daemon: a camera box kill -9ed while a panic clip waits for its
// post-roll tells the console, once it runs again, that the clip was lost (`clip-failed`, same clipId),
// and a box kill -9ed after the clip was kept delivers the clip and sends no clip-failed; a clip-failed
// the hub had not acknowledged is sent again with its own reason. The console is a subscriber at the
// test hub; the daemon is the built CLI, `outpost clip` the press.
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { STOPPED_DURING_CLIP } from '../../daemon/src/clips/panic.js';
import { connectAs, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { cameraBoxConfig, testCameraYaml } from '../support/box.js';
import { cliRuns, runCliToEnd, until } from '../support/processes.js';

const { start, stopAll } = cliRuns();
const clients: MqttClient[] = [];
let hub: TestBroker | undefined;

afterEach(async () => {
  await stopAll();
  for (const client of clients.splice(0)) await client.endAsync(true);
  await hub?.stop();
  hub = undefined;
});

/** A camera box (one test camera, or none) with its uplink at the test hub. */
async function cameraBox(hubPort: number, postRollSeconds: number, cameras = testCameraYaml) {
  const { file, dataDir } = await cameraBoxConfig(hubPort, [
    await cameras(),
    `clips:\n  preRollSeconds: 1\n  postRollSeconds: ${postRollSeconds}\n  chunkBytes: 16384`,
  ]);
  return { file, inProgress: join(dataDir, 'clips', 'in-progress') };
}

/** The console at the hub: every alert and manifest of cam-a, as they come. */
async function consoleAtHub(broker: TestBroker, options: { clientId?: string; clean?: boolean } = {}) {
  const alerts: { kind: string; clipId?: string; message: string }[] = [];
  const manifests: string[] = [];
  const client = await connectAs(broker, 'console', options, 'mqtts', (topic, payload) => {
    if (topic.endsWith('/alert'))
      alerts.push(JSON.parse(payload.toString()) as { kind: string; clipId?: string; message: string });
    const manifest = /\/clip\/([^/]+)$/.exec(topic);
    if (manifest?.[1]) manifests.push(manifest[1]);
  });
  clients.push(client);
  await client.subscribeAsync([`outpost/v1/${SITE}/cam-a/alert`, `outpost/v1/${SITE}/cam-a/clip/+`], {
    qos: 1,
  });
  return { alerts, manifests };
}

/** `cmd/clip-chunks` with an empty list from a console at the hub: the box's reply. */
async function askForManifest(clipId: string): Promise<Record<string, unknown>> {
  if (!hub) throw new Error('no hub');
  const client = await connectAs(hub, 'console');
  clients.push(client);
  await client.subscribeAsync(`outpost/v1/${SITE}/cam-a/reply/clip-chunks`, { qos: 1 });
  const reply = new Promise<Record<string, unknown>>((resolve) =>
    client.on('message', (_topic, payload) =>
      resolve(JSON.parse(payload.toString()) as Record<string, unknown>),
    ),
  );
  await client.publishAsync(
    `outpost/v1/${SITE}/cam-a/cmd/clip-chunks`,
    JSON.stringify({ id: 'ask-1', args: { clipId, chunks: [] } }),
    { qos: 1 },
  );
  return reply;
}

/** `outpost clip` on the box: the alert goes out at once; returns the clip id. */
async function press(file: string): Promise<string> {
  const asked = await runCliToEnd(['clip', '--config', file]);
  expect(asked.code, asked.stderr).toBe(0);
  const clipId = /clip (\S+) /.exec(asked.stdout)?.[1];
  if (!clipId) throw new Error(`no clip id in: ${asked.stdout}`);
  return clipId;
}

describe('clips in progress when the daemon is killed', () => {
  it('kill -9 during the post-roll: after the restart the console gets a clip-failed for that clip', async () => {
    // A long post-roll: the kill comes while the clip waits for it.
    const { alerts, manifests, box, first, clipId, entry } = await pressedBox(30);
    await until(() => existsSync(entry), 10_000, 'the clip written down as in progress');
    await until(
      () => alerts.some((a) => a.kind === 'panic' && a.clipId === clipId),
      10_000,
      'the panic alert at the console',
    );
    expect(first.stdout()).not.toContain('clip muxed from the pre-roll');
    // A receiver asking for the manifest now is told the clip is still being recorded.
    expect(await askForManifest(clipId)).toMatchObject({
      ok: false,
      error: { message: `clip ${clipId} is still being recorded; its manifest follows once it is stored` },
    });
    first.child.kill('SIGKILL');
    await first.exited();

    const second = start(['run', '--config', box.file]);
    await second.waitForLog(
      (line) =>
        typeof line.msg === 'string' && line.msg.startsWith('panic clip lost') && line.clipId === clipId,
      30_000,
    );
    await until(
      () => alerts.some((a) => a.kind === 'clip-failed' && a.clipId === clipId),
      20_000,
      'the clip-failed alert at the console',
    );
    const failed = alerts.find((a) => a.kind === 'clip-failed' && a.clipId === clipId);
    expect(failed?.message).toBe(`no clip for panic ${clipId}: ${STOPPED_DURING_CLIP}`.slice(0, 500));
    // Settled once the hub acknowledged it: the next start has nothing left to say.
    await until(() => !existsSync(entry), 10_000, 'the in-progress entry removed');
    expect(manifests).not.toContain(clipId);
  });

  it('kill -9 after the clip was kept: the clip is delivered and no clip-failed is sent', async () => {
    const { alerts, manifests, box, first, clipId, entry } = await pressedBox(1);
    await until(() => existsSync(entry), 10_000, 'the clip written down as in progress');
    const written = await readFile(entry, 'utf8');
    await first.waitForLog((line) => line.msg === 'clip stored' && line.clipId === clipId, 30_000);
    first.child.kill('SIGKILL');
    await first.exited();
    // The kill may land just before or just after the entry's removal; the test makes it the worst
    // case, a kill after the clip's rename into the store and before its entry was removed.
    if (!existsSync(entry)) await writeFile(entry, written);

    const second = start(['run', '--config', box.file]);
    await second.waitForLog(
      (line) =>
        typeof line.msg === 'string' &&
        line.msg.startsWith('clip in progress when the daemon stopped had been kept') &&
        line.clipId === clipId,
      30_000,
    );
    await until(() => manifests.includes(clipId), 30_000, 'the clip manifest at the console');
    await until(() => !existsSync(entry), 10_000, 'the in-progress entry removed');
    // Settling is one decision per entry at start, logged: this one was "kept", never "lost".
    expect(second.stdout()).not.toContain('panic clip lost');
    expect(alerts.filter((a) => a.kind === 'clip-failed')).toEqual([]);
    expect(await readdir(box.inProgress)).toEqual([]);
  });

  it('a clip-failed the hub had not acknowledged when the daemon was killed is sent again, with its reason', async () => {
    hub = await startTestBroker();
    // The console's persistent session at the hub; then the hub goes away.
    const persistent = { clientId: 'console.journal', clean: false };
    const away = await connectAs(hub, 'console', persistent);
    await away.subscribeAsync(`outpost/v1/${SITE}/cam-a/alert`, { qos: 1 });
    await away.endAsync();
    await hub.broker.stop();
    // No camera: the clip cannot be cut, and the clip-failed waits in the uplink's store for the hub.
    const box = await cameraBox(hub.mqttsPort, 1, () => Promise.resolve('cameras: []'));
    const first = start(['run', '--config', box.file]);
    await first.waitForLog((line) => line.msg === 'started' && line.subsystem === 'panic');
    const clipId = await press(box.file);
    await first.waitForLog(
      (line) => line.msg === 'panic clip could not be made (the alert was sent)' && line.clipId === clipId,
    );
    const entry = join(box.inProgress, `${clipId}.json`);
    await until(
      () => existsSync(entry) && readFileSync(entry, 'utf8').includes('"failed"'),
      10_000,
      'the reason kept with the in-progress entry',
    );
    first.child.kill('SIGKILL');
    await first.exited();

    await hub.restart();
    const second = start(['run', '--config', box.file]);
    await second.waitForLog(
      (line) =>
        line.msg === 'clip-failed alert not acknowledged in the last run; sent again' &&
        line.clipId === clipId,
    );
    await until(() => !existsSync(entry), 20_000, 'the in-progress entry removed once the hub acknowledged');
    const { alerts } = await consoleAtHub(hub, persistent);
    await until(
      () => alerts.some((a) => a.kind === 'clip-failed' && a.clipId === clipId),
      10_000,
      'the clip-failed alert at the console',
    );
    for (const failed of alerts.filter((a) => a.kind === 'clip-failed'))
      expect(failed.message).toMatch(new RegExp(`^no clip for panic ${clipId}: .*no camera to record`));
    expect(second.stdout()).not.toContain('panic clip lost');
  });
});

/** A hub, a console at it, and a camera box (post-roll in seconds) running and pressed once. */
async function pressedBox(postRollSeconds: number) {
  hub = await startTestBroker();
  const { alerts, manifests } = await consoleAtHub(hub);
  const box = await cameraBox(hub.mqttsPort, postRollSeconds);
  const first = start(['run', '--config', box.file]);
  await first.waitForLog((line) => line.msg === 'uplink connected');
  const clipId = await press(box.file);
  return { alerts, manifests, box, first, clipId, entry: join(box.inProgress, `${clipId}.json`) };
}
