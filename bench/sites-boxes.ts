// One site's load for bench:sites, in a process of its own (forked by bench/sites.ts): M simulated boxes,
// MQTT.js clients of the hub's TLS listener speaking contract v1 (retained status, telemetry every 10 s,
// alerts in bursts at QoS 1), and the site's WAN link to the centre (a proxy the parent can cut).
// Commands and reports go over the IPC channel.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connectAsync, type MqttClient } from 'mqtt';
import type { AlertPayload, StatusPayload, TelemetryPayload } from '../daemon/src/mqtt/contract.js';
import { topics } from '../daemon/src/mqtt/topics.js';
import { LinkProxy } from '../test/support/centre.js';

export type ToBoxes =
  | { type: 'init'; site: string; centre: { host: string; port: number } }
  | { type: 'connect'; hubPort: number; ca: string; boxes: number; password: string; concurrency: number }
  | { type: 'telemetry'; intervalMs: number }
  | { type: 'burst'; count: number }
  | { type: 'flood'; perSecond: number }
  | { type: 'cut'; ms: number }
  | { type: 'down' }
  | { type: 'restore' }
  | { type: 'stats' }
  | { type: 'stop' };

export type FromBoxes =
  | { type: 'proxy'; port: number }
  | { type: 'connected'; boxes: number; ms: number }
  | { type: 'burst'; ids: string[] }
  | { type: 'stats'; alertsSent: number; alertsAcked: number; telemetrySent: number; floodSent: number }
  | { type: 'stopped' }
  | { type: 'error'; message: string };

const send = (message: FromBoxes) => process.send?.(message);

let site = 'site';
let proxy: LinkProxy | undefined;
const boxes: Array<{ name: string; client: MqttClient; bootId: string; seq: number }> = [];
let telemetryTimer: NodeJS.Timeout | undefined;
let floodTimer: NodeJS.Timeout | undefined;
let alertsSent = 0;
let alertsAcked = 0;
let telemetrySent = 0;
let floodSent = 0;
let alertCounter = 0;

function stamp(box: (typeof boxes)[number]) {
  box.seq += 1;
  return { at: Date.now(), bootId: box.bootId, seq: box.seq };
}

function telemetry(box: (typeof boxes)[number]): TelemetryPayload {
  return {
    ...stamp(box),
    cpuLoadPercent: 12.5,
    temperatureC: 48.2,
    memory: { usedBytes: 312_000_000, totalBytes: 1_000_000_000 },
    disk: { path: '/var/lib/outpost', usedBytes: 4_100_000_000, totalBytes: 28_000_000_000 },
    uptimeSeconds: 86_400,
    network: [{ iface: 'eth0', rxBytes: 123_456_789, txBytes: 987_654_321 }],
    throttled: { raw: 0, underVoltage: false, throttled: false, frequencyCapped: false },
  };
}

function publishTelemetry(box: (typeof boxes)[number]): void {
  telemetrySent += 1;
  box.client.publish(topics.telemetry(site, box.name), JSON.stringify(telemetry(box)), { qos: 0 });
}

function alert(box: (typeof boxes)[number]): AlertPayload {
  alertCounter += 1;
  return {
    ...stamp(box),
    id: `${site}-${alertCounter}`,
    device: box.name,
    kind: 'panic',
    severity: 'critical',
    state: 'raised',
    message: 'bench:sites',
    trigger: 'mqtt',
  };
}

async function connectBoxes(message: Extract<ToBoxes, { type: 'connect' }>): Promise<void> {
  const started = performance.now();
  const ca = await readFile(message.ca);
  const names = [...Array(message.boxes).keys()].map((i) => `box-${i}`);
  // A few at a time: each login costs the hub one scrypt check.
  for (let i = 0; i < names.length; i += message.concurrency) {
    await Promise.all(
      names.slice(i, i + message.concurrency).map(async (name) => {
        const client = await connectAsync(`mqtts://127.0.0.1:${message.hubPort}`, {
          ca: [ca],
          servername: 'localhost',
          username: name,
          password: message.password,
          clientId: `${name}.bench`,
          reconnectPeriod: 1000,
          connectTimeout: 60_000,
          keepalive: 60,
        });
        client.on('error', () => undefined);
        const box = { name, client, bootId: randomUUID(), seq: 0 };
        boxes.push(box);
        const status: StatusPayload = {
          ...stamp(box),
          state: 'online',
          device: name,
          role: 'camera',
          version: 'bench',
        };
        await client.publishAsync(topics.status(site, name), JSON.stringify(status), {
          qos: 1,
          retain: true,
        });
      }),
    );
  }
  send({ type: 'connected', boxes: boxes.length, ms: Math.round(performance.now() - started) });
}

function burst(count: number): void {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const box = boxes[Math.floor(Math.random() * boxes.length)];
    if (!box) break;
    const payload = alert(box);
    ids.push(payload.id);
    alertsSent += 1;
    box.client.publish(topics.alert(site, box.name), JSON.stringify(payload), { qos: 1 }, (error) => {
      if (!error) alertsAcked += 1;
    });
  }
  send({ type: 'burst', ids });
}

/** `perSecond` extra telemetry-shaped QoS 0 messages, spread over the boxes, in 10 ms ticks. */
function flood(perSecond: number): void {
  clearInterval(floodTimer);
  if (perSecond <= 0) return;
  let owed = 0;
  let next = 0;
  floodTimer = setInterval(() => {
    owed += perSecond / 100;
    while (owed >= 1) {
      owed -= 1;
      const box = boxes[next++ % boxes.length];
      if (!box) return;
      floodSent += 1;
      box.client.publish(topics.telemetry(site, box.name), JSON.stringify(telemetry(box)), { qos: 0 });
    }
  }, 10);
}

process.on('message', (message: ToBoxes) => {
  void (async () => {
    switch (message.type) {
      case 'init': {
        site = message.site;
        proxy = new LinkProxy(message.centre);
        send({ type: 'proxy', port: await proxy.start() });
        break;
      }
      case 'connect':
        await connectBoxes(message);
        break;
      case 'telemetry': {
        clearInterval(telemetryTimer);
        // Spread the boxes over the interval, as real boxes started at different times would be.
        let next = 0;
        const tick = Math.max(10, message.intervalMs / Math.max(1, boxes.length));
        telemetryTimer = setInterval(() => {
          const box = boxes[next++ % boxes.length];
          if (box) publishTelemetry(box);
        }, tick);
        break;
      }
      case 'burst':
        burst(message.count);
        break;
      case 'flood':
        flood(message.perSecond);
        break;
      case 'cut':
        proxy?.cut(message.ms);
        break;
      case 'down':
        proxy?.down();
        break;
      case 'restore':
        proxy?.restore();
        break;
      case 'stats':
        send({ type: 'stats', alertsSent, alertsAcked, telemetrySent, floodSent });
        break;
      case 'stop':
        clearInterval(telemetryTimer);
        clearInterval(floodTimer);
        await Promise.all(boxes.map((box) => box.client.endAsync(true)));
        await proxy?.stop();
        send({ type: 'stopped' });
        process.disconnect();
        break;
    }
  })().catch((error: unknown) => send({ type: 'error', message: String(error) }));
});
