// The running daemon on MQTT, seen by a console: its retained status and camera state validate against
// contract v1, and commands get replies (errors included) with the console's correlation id.
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  alertPayload,
  cameraStatePayload,
  replyPayload,
  statusPayload,
  telemetryPayload,
  type ReplyPayload,
} from '../../daemon/src/mqtt/contract.js';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { connectListening, hubDataDir, PEOPLE, SITE } from '../support/broker.js';
import { freePort, runCli, until, writeTemp, type Run } from '../support/processes.js';

const DEVICE = 'hub';
let daemon: Run;
let console1: MqttClient;
const messages: Array<{ topic: string; body: unknown }> = [];

beforeAll(async () => {
  const { dataDir, identitiesFile } = await hubDataDir();
  const port = await freePort();
  const rtpPort = await freePort();
  const file = await writeTemp(
    'outpost.yaml',
    [
      `site: ${SITE}`,
      `device: ${DEVICE}`,
      `dataDir: ${dataDir}`,
      `broker:\n  tcp:\n    port: ${port}\n  identitiesFile: ${identitiesFile}`,
      `cameras:\n  - name: cam0\n    width: 320\n    height: 240\n    rtp:\n      port: ${rtpPort}`,
    ].join('\n'),
  );
  daemon = runCli(['run', '--config', file]);
  await daemon.waitForLog((line) => line.msg === 'outpost running');
  console1 = await connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'console',
    password: PEOPLE.console?.password,
    reconnectPeriod: 0,
  });
  console1.on('message', (topic, payload) => {
    let body: unknown;
    try {
      body = JSON.parse(payload.toString());
    } catch {
      body = payload.toString(); // our own malformed command, echoed by the site-wide subscription
    }
    messages.push({ topic, body });
  });
  await console1.subscribeAsync(`outpost/v1/${SITE}/#`, { qos: 1 });
});

afterAll(async () => {
  await console1?.endAsync(true);
  daemon?.child.kill('SIGTERM');
  await daemon?.exited();
});

async function command(verb: string, payload: string): Promise<ReplyPayload> {
  const replyTopic = topics.reply(SITE, DEVICE, verb);
  const before = messages.length;
  await console1.publishAsync(topics.cmd(SITE, DEVICE, verb), payload, { qos: 1 });
  await until(
    () => messages.slice(before).some((m) => m.topic === replyTopic),
    15_000,
    `a reply on ${replyTopic}`,
  );
  const reply = messages.slice(before).find((m) => m.topic === replyTopic);
  return replyPayload.parse(reply?.body);
}

describe('daemon on MQTT', () => {
  it('publishes a retained online status and retained camera state that validate against contract v1', async () => {
    await until(() => messages.some((m) => m.topic === topics.status(SITE, DEVICE)), 5000, 'the status');
    const status = messages.find((m) => m.topic === topics.status(SITE, DEVICE));
    expect(statusPayload.parse(status?.body)).toMatchObject({ state: 'online', device: DEVICE, role: 'hub' });
    const stateTopic = topics.cameraState(SITE, DEVICE, 'cam0');
    await until(
      () =>
        messages.some((m) => m.topic === stateTopic && (m.body as { state?: string }).state === 'streaming'),
      20_000,
      'cam0 streaming',
    );
    for (const m of messages.filter((m) => m.topic === stateTopic)) cameraStatePayload.parse(m.body);
  });

  it('a camera that cannot run raises one camera-failed alert, kept for a console that was away', async () => {
    // A box whose only camera forces the Pi hardware encoder, which this machine lacks.
    const { dataDir, identitiesFile } = await hubDataDir();
    const port = await freePort();
    const file = await writeTemp(
      'outpost.yaml',
      [
        `site: ${SITE}`,
        'device: box2',
        `dataDir: ${dataDir}`,
        `broker:\n  tcp:\n    port: ${port}\n  identitiesFile: ${identitiesFile}`,
        `cameras:\n  - name: cam1\n    encoder: v4l2h264enc\n    rtp:\n      port: ${await freePort()}`,
      ].join('\n'),
    );
    const start = async () => {
      const run = runCli(['run', '--config', file]);
      await run.waitForLog((line) => line.msg === 'outpost running');
      return run;
    };
    const session = {
      clientId: 'console.alerts',
      clean: false,
      username: 'console',
      password: PEOPLE.console?.password,
      reconnectPeriod: 0,
    };
    // The console's persistent session exists; then the console is away while the box restarts.
    let box = await start();
    const first = await connectAsync(`mqtt://127.0.0.1:${port}`, session);
    await first.subscribeAsync([topics.alert(SITE, 'box2'), topics.cameraState(SITE, 'box2', 'cam1')], {
      qos: 1,
    });
    await first.endAsync();
    box.child.kill('SIGTERM');
    await box.exited();
    box = await start();
    try {
      const seen: Array<{ topic: string; body: unknown }> = [];
      const back = await connectListening(`mqtt://127.0.0.1:${port}`, session, (topic, payload) =>
        seen.push({ topic, body: JSON.parse(payload.toString()) as unknown }),
      );
      const alerts = () =>
        seen.filter((m) => m.topic === topics.alert(SITE, 'box2')).map((m) => alertPayload.parse(m.body));
      await until(() => alerts().length > 0, 10_000, 'the camera-failed alert');
      // Several more checks (one a second) go by: still one alert.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(alerts()).toEqual([
        expect.objectContaining({
          kind: 'camera-failed',
          state: 'raised',
          severity: 'critical',
          cameras: ['cam1'],
        }),
      ]);
      const states = seen
        .filter((m) => m.topic.endsWith('/cam1/state'))
        .map((m) => cameraStatePayload.parse(m.body));
      // In publish order across the restart: the first run's `stopped`, then this run's `failed`.
      expect(states.map((state) => state.state)).toEqual(['stopped', 'failed']);
      expect(states.at(-1)).toMatchObject({
        state: 'failed',
        lastError: expect.stringMatching(/v4l2h264enc/) as unknown,
      });
      await back.endAsync();
    } finally {
      box.child.kill('SIGTERM');
      await box.exited();
    }
  });

  it('publishes telemetry that validates against contract v1', async () => {
    const topic = topics.telemetry(SITE, DEVICE);
    await until(() => messages.some((m) => m.topic === topic), 10_000, 'a telemetry sample');
    const sample = telemetryPayload.parse(messages.find((m) => m.topic === topic)?.body);
    expect(sample.memory.totalBytes).toBeGreaterThan(0);
    expect(sample.disk.totalBytes).toBeGreaterThan(0);
  });

  it('answers ping with the correlation id', async () => {
    const reply = await command('ping', JSON.stringify({ id: 'c-1' }));
    expect(reply).toMatchObject({ id: 'c-1', ok: true, result: { pong: true, device: DEVICE } });
  });

  it('answers an unknown verb, a non-command payload and bad arguments with error replies', async () => {
    expect(await command('launch-missiles', JSON.stringify({ id: 'c-2' }))).toMatchObject({
      id: 'c-2',
      ok: false,
      error: { code: 'UNKNOWN_VERB' },
    });
    expect(await command('ping', 'not json')).toMatchObject({ ok: false, error: { code: 'BAD_COMMAND' } });
    expect(
      await command('restart-camera', JSON.stringify({ id: 'c-3', args: { camera: 'nope' } })),
    ).toMatchObject({
      id: 'c-3',
      ok: false,
      error: {
        code: 'BAD_ARGUMENTS',
        message: expect.stringMatching(/no camera nope; cameras: cam0/) as unknown,
      },
    });
  });

  it('restart-camera restarts that camera and reports it', async () => {
    const reply = await command('restart-camera', JSON.stringify({ id: 'c-4', args: { camera: 'cam0' } }));
    expect(reply).toMatchObject({ id: 'c-4', ok: true, result: { camera: 'cam0' } });
  });
});
