// A camera box started while its hub is down, as a user sees it in the log: each failed reconnect is
// one line; no Node warning about a TLS server name that is an IP address; a box without cameras makes
// no pre-roll folder and warns about none; when the hub comes, `uplink connected` says how many stored
// messages it resent (the panic alert and its clip-failed), and the box answers commands sent to it
// through the hub although its subscription could not be made at start.
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAs, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { cameraBoxConfig } from '../support/box.js';
import { cliRuns, runCliToEnd, until } from '../support/processes.js';

const { start, stopAll } = cliRuns();
let hub: TestBroker | undefined;
const clients: MqttClient[] = [];

afterEach(async () => {
  await stopAll();
  for (const client of clients.splice(0)) await client.endAsync(true);
  await hub?.stop();
  hub = undefined;
});

describe('a camera box whose hub is down at start', () => {
  it('logs each failed reconnect once, warns about nothing it does not do, counts what it resent, and answers commands once the hub is up', async () => {
    hub = await startTestBroker();
    await hub.broker.stop();
    const { file } = await cameraBoxConfig(hub.mqttsPort, ['cameras: []']);
    const box = start(['run', '--config', file]);
    await box.waitForLog((line) => line.msg === 'outpost running', 30_000);
    // A press with no camera: its alert and its clip-failed wait in the uplink's store.
    const asked = await runCliToEnd(['clip', '--config', file]);
    expect(asked.code, asked.stderr).toBe(0);
    await box.waitForLog((line) => line.msg === 'panic clip could not be made (the alert was sent)');
    // Three reconnect attempts or so (every 2 s).
    await new Promise((resolve) => setTimeout(resolve, 5000));

    await hub.restart();
    const connected = await box.waitForLog((line) => line.msg === 'uplink connected', 20_000);
    const console = await connectAs(hub, 'console');
    clients.push(console);
    const replies: string[] = [];
    console.on('message', (_topic, payload) => replies.push(payload.toString()));
    await console.subscribeAsync(`outpost/v1/${SITE}/cam-a/reply/ping`, { qos: 1 });
    // Sent until answered: the box's subscription may be made a moment after `uplink connected`.
    await until(
      () => {
        if (replies.length === 0)
          console.publish(
            `outpost/v1/${SITE}/cam-a/cmd/ping`,
            JSON.stringify({ id: `ping-${Date.now()}`, args: {} }),
            { qos: 1 },
          );
        return replies.length > 0;
      },
      10_000,
      'a reply to ping through the hub',
    ).catch(() => undefined);

    const errors = box
      .stdout()
      .split('\n')
      .filter((line) => line.includes('"uplink error"'))
      .map((line) => Date.parse((JSON.parse(line) as { time: string }).time));
    const sameAttempt = errors.filter((at, i) => i > 0 && at - (errors[i - 1] ?? 0) < 500).length;
    expect.soft(errors.length, 'failed reconnects logged').toBeGreaterThanOrEqual(2);
    expect.soft(sameAttempt, 'a failed reconnect logged twice').toBe(0);
    expect.soft(box.stderr(), 'Node warnings').not.toMatch(/DEP0123|servername/i);
    expect.soft(box.stdout()).not.toContain('pre-roll folder is not on a tmpfs');
    expect.soft(box.stdout()).not.toContain('uplink subscription refused by the hub');
    // The panic alert, its clip-failed, and the retained update state (`idle`, QoS 1) of the update room.
    expect.soft(connected.resent, 'resent (the alert, its clip-failed, the update state)').toBe(3);
    expect(replies.length, 'replies to ping through the hub').toBeGreaterThan(0);
  });
});
