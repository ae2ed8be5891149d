// The site bridge end to end: a real hub daemon (`outpost run`) bridged to Debian's mosquitto as the
// operations centre's broker, configured by `outpost-provision centre` (TLS with the centre CA, password
// or client certificate, ACL), through a proxy that cuts the link. Boxes and consoles are MQTT.js clients.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  bridgeStatePayload,
  chatPayload,
  inboxEntryPayload,
  replyPayload,
} from '../../daemon/src/mqtt/contract.js';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { identitiesJson, P, PEOPLE, SITE } from '../support/broker.js';
import { cliRuns, freePort, until, type Run } from '../support/processes.js';
import {
  bridgedHub,
  centreWithSites,
  siteClient,
  type CentreSetup,
  type HubFiles,
} from '../support/sites.js';
import { testPki } from '../support/pki.js';

const runs = cliRuns();
const clients: MqttClient[] = [];
const hubs: HubFiles[] = [];
let setup: CentreSetup;

beforeAll(async () => {
  setup = await centreWithSites([{ site: SITE }, { site: 'plant-c', cert: true }]);
});

afterAll(async () => {
  await setup?.stop();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
  await runs.stopAll();
  await Promise.all(hubs.splice(0).map((hub) => hub.proxy.stop()));
});

async function hub(options: Partial<Parameters<typeof bridgedHub>[1]> = {}): Promise<HubFiles> {
  const site = options.site ?? SITE;
  const identities = (await identitiesJson(PEOPLE)).replace(`"site": "${SITE}"`, `"site": "${site}"`);
  const files = await bridgedHub(setup, { site, identities, ...options });
  hubs.push(files);
  return files;
}

async function run(files: HubFiles, waitForLink = true): Promise<Run> {
  const daemon = runs.start(['run', '--config', files.file]);
  await daemon.waitForLog((line) => line.msg === 'outpost running', 30_000);
  if (waitForLink) await daemon.waitForLog((line) => line.msg === 'bridge link up', 30_000);
  return daemon;
}

async function box(files: HubFiles, name: string): Promise<MqttClient> {
  const client = await siteClient(files, name, PEOPLE[name]?.password ?? '');
  clients.push(client);
  return client;
}

async function ops(
  extra = {},
): Promise<{ client: MqttClient; got: Array<{ topic: string; payload: Buffer; retain: boolean }> }> {
  const client = await setup.ops(extra);
  clients.push(client);
  const got: Array<{ topic: string; payload: Buffer; retain: boolean }> = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload, retain: packet.retain }));
  return { client, got };
}

/**
 * Attach strace to `pid` (every thread) and delay each of its fsync and fdatasync calls by `us`; resolves
 * once attached, with strace's exit (once the process is gone).
 */
async function slowFsync(pid: number, us: number): Promise<{ exited: Promise<void> }> {
  const strace = spawn('strace', [
    '-f',
    '-qq',
    '-o',
    '/dev/null',
    '-e',
    'trace=fsync,fdatasync',
    '-e',
    `inject=fsync,fdatasync:delay_enter=${us}`,
    '-p',
    String(pid),
  ]);
  const exited = new Promise<void>((resolve) => strace.once('exit', () => resolve()));
  // strace attaches every thread before it lets the process run on; /proc shows the tracer.
  await until(
    () => /TracerPid:\s+[1-9]/.test(readFileSync(`/proc/${pid}/status`, 'utf8')),
    10_000,
    'strace to attach',
  );
  return { exited };
}

const alert = (i: number) =>
  JSON.stringify({
    at: Date.now(),
    bootId: 'test-boot-0001',
    seq: i,
    id: `a-${i}`,
    device: 'cam-a',
    kind: 'panic',
    severity: 'critical',
    state: 'raised',
    message: `press ${i}`,
  });
const json = (payload: Buffer): Record<string, unknown> =>
  JSON.parse(payload.toString()) as Record<string, unknown>;

describe('site bridge to a central mosquitto', () => {
  it("a box's alert, status and telemetry reach the centre; states are retained there", async () => {
    const files = await hub();
    const centre = await ops();
    await centre.client.subscribeAsync(`${P}/#`, { qos: 1 });
    await run(files);
    const cam = await box(files, 'cam-a');
    await cam.publishAsync(topics.status(SITE, 'cam-a'), '{"state":"online"}', { qos: 1, retain: true });
    await cam.publishAsync(topics.alert(SITE, 'cam-a'), alert(1), { qos: 1 });
    await cam.publishAsync(topics.telemetry(SITE, 'cam-a'), '{"cpuLoadPercent":3}', { qos: 0 });
    await until(
      () => centre.got.some((m) => m.topic === topics.telemetry(SITE, 'cam-a')),
      10_000,
      'the telemetry at the centre',
    );
    const mine = centre.got.filter((m) => m.topic.startsWith(`${P}/cam-a/`)).map((m) => m.topic);
    expect(mine).toEqual([
      topics.status(SITE, 'cam-a'),
      topics.alert(SITE, 'cam-a'),
      topics.telemetry(SITE, 'cam-a'),
    ]);
    // A console that connects later gets the retained states: the box's, the hub's own and the link's.
    const late = await ops();
    await late.client.subscribeAsync([`${P}/+/status`, `${P}/+/bridge`], { qos: 1 });
    await until(() => late.got.length >= 3, 5000, 'retained states for a late console');
    expect(late.got.every((m) => m.retain)).toBe(true);
    expect(late.got.map((m) => m.topic).sort()).toEqual(
      [topics.bridge(SITE, 'hub'), topics.status(SITE, 'cam-a'), topics.status(SITE, 'hub')].sort(),
    );
    const link = bridgeStatePayload.parse(json(late.got.find((m) => m.topic.endsWith('/bridge'))!.payload));
    expect(link).toMatchObject({ state: 'up', device: 'hub', broker: `127.0.0.1:${files.proxy.port}` });
  });

  it("the centre's commands reach the site and their replies come back; chat crosses each way once", async () => {
    const files = await hub();
    const centre = await ops();
    await centre.client.subscribeAsync([`${P}/hub/reply/+`, `${P}/chat/+`], { qos: 1 });
    await run(files);
    await centre.client.publishAsync(topics.cmd(SITE, 'hub', 'ping'), '{"id":"c-1"}', { qos: 1 });
    await until(
      () => centre.got.some((m) => m.topic.endsWith('/reply/ping')),
      10_000,
      'the reply at the centre',
    );
    const reply = replyPayload.parse(json(centre.got.find((m) => m.topic.endsWith('/reply/ping'))!.payload));
    expect(reply).toMatchObject({ id: 'c-1', ok: true });

    const siteConsole = await box(files, 'console');
    const atSite: Buffer[] = [];
    siteConsole.on('message', (_topic, payload) => atSite.push(payload));
    await siteConsole.subscribeAsync(`${P}/chat/+`, { qos: 1 });
    await centre.client.publishAsync(topics.chat(SITE, 'ops'), '{"text":"from the centre"}', { qos: 1 });
    await until(() => atSite.length === 1, 10_000, 'the centre’s chat at the site');
    // Stamped by the site broker with the bridge's identity: the centre's sender is not vouched for.
    expect(chatPayload.parse(json(atSite[0]!))).toMatchObject({
      from: 'centre',
      role: 'console',
      text: 'from the centre',
    });

    const alice = await box(files, 'alice');
    await alice.publishAsync(topics.chat(SITE, 'ops'), '{"text":"from the site"}', { qos: 1 });
    await until(
      () => centre.got.some((m) => m.payload.toString().includes('from the site')),
      10_000,
      'the site’s chat at the centre',
    );
    // Long enough for an echo or a loop to show up.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const chats = centre.got.filter((m) => m.topic === topics.chat(SITE, 'ops')).map((m) => json(m.payload));
    expect(chats.map((c) => c.text)).toEqual(['from the centre', 'from the site']);
    expect(chats[1]).toMatchObject({ from: 'alice', role: 'staff' });
    expect(atSite.map((p) => json(p).text)).toEqual(['from the centre', 'from the site']);
  });

  it('store and forward: alerts across a link cut, a hub restart and a kill -9 all reach the centre in order', async () => {
    const files = await hub();
    const centre = await ops({ clean: false, clientId: 'ops-persistent' });
    await centre.client.subscribeAsync(`${P}/+/alert`, { qos: 1 });
    let daemon = await run(files);
    files.proxy.down();
    await daemon.waitForLog((line) => line.msg === 'bridge link down; storing on disk', 10_000);
    let cam = await box(files, 'cam-a');
    const send = async (from: number, to: number) => {
      for (let i = from; i < to; i += 1)
        await cam.publishAsync(topics.alert(SITE, 'cam-a'), alert(i), { qos: 1 });
    };
    await send(0, 100);
    // A clean restart with the link still down, then a kill -9 with messages in the store.
    for (const [signal, from] of [
      ['SIGTERM', 100],
      ['SIGKILL', 200],
    ] as const) {
      daemon.child.kill(signal);
      await daemon.exited();
      await cam.endAsync(true);
      daemon = await run(files, false);
      cam = await box(files, 'cam-a');
      await send(from, from + 100);
    }
    expect(centre.got.length).toBe(0);
    files.proxy.restore();
    const ids = () => new Set(centre.got.map((m) => json(m.payload).id));
    await until(() => ids().size === 300, 30_000, 'all 300 alerts at the centre');
    // First arrivals in order (QoS 1 may repeat one after a cut; a repeat is recognised by its id).
    const first: number[] = [];
    for (const m of centre.got) {
      const n = json(m.payload).seq as number;
      if (!first.includes(n)) first.push(n);
    }
    expect(first).toEqual([...Array(300).keys()]);
  });

  it('kill -9 mid-stream while the link is up: every alert the site broker acknowledged reaches the centre', async () => {
    // The link goes silent (both ends still believe it is up), so nothing the bridge takes reaches the
    // centre before the kill: what the bridge acknowledged to the site broker is only in its own store.
    // Every fsync of the hub takes 100 ms more (strace's fault injection), as on a slow SD card: a
    // message acknowledged before it is written would stay in memory long enough for the kill to find it.
    const files = await hub({ bridge: { keepAliveSeconds: 300 } });
    const centre = await ops({ clean: false, clientId: 'ops-kill9' });
    await centre.client.subscribeAsync(`${P}/+/alert`, { qos: 1 });
    let daemon = await run(files);
    const slowDisk = await slowFsync(daemon.child.pid!, 100_000);
    files.proxy.stall();
    const cam = await box(files, 'cam-a');
    const acknowledged = new Set<string>();
    const total = 600;
    let sent = 0;
    const killed = new Promise<void>((resolve) => {
      const next = () => {
        // 50 in flight at a time: the site broker acknowledges each once it has it.
        while (sent < total && sent - acknowledged.size < 50) {
          const i = sent++;
          cam.publish(topics.alert(SITE, 'cam-a'), alert(i), { qos: 1 }, (error) => {
            if (error) return;
            acknowledged.add(`a-${i}`);
            if (acknowledged.size === total / 2) {
              daemon.child.kill('SIGKILL');
              resolve();
            } else next();
          });
        }
      };
      next();
    });
    await killed;
    await daemon.exited();
    await slowDisk.exited;
    await cam.endAsync(true);
    expect(centre.got.length).toBe(0); // the silent link carried nothing
    files.proxy.restore();
    daemon = await run(files);
    const arrived = () => new Set(centre.got.map((m) => json(m.payload).id as string));
    const missing = () => [...acknowledged].filter((id) => !arrived().has(id));
    await until(() => missing().length === 0, 30_000, 'every acknowledged alert at the centre').catch(() => {
      throw new Error(
        `${missing().length} of ${acknowledged.size} acknowledged alerts never reached the centre: ${missing()
          .slice(0, 10)
          .join(', ')}…`,
      );
    });
  });

  it('a full store drops telemetry first and counts it; every alert still arrives', async () => {
    const files = await hub({ bridge: { maxQueueBytes: 65_536, stateIntervalSeconds: 1 } });
    const centre = await ops();
    await centre.client.subscribeAsync([`${P}/cam-a/+`, `${P}/hub/bridge`, `${P}/hub/telemetry`], {
      qos: 1,
    });
    const daemon = await run(files);
    // The hub's own first telemetry sample (the next is an hour away) must not be among the drops.
    await until(() => centre.got.some((m) => m.topic.endsWith('/hub/telemetry')), 20_000, "the hub's sample");
    files.proxy.down();
    await daemon.waitForLog((line) => line.msg === 'bridge link down; storing on disk', 10_000);
    const cam = await box(files, 'cam-a');
    const sample = (i: number) => JSON.stringify({ seq: i, pad: 'x'.repeat(400) });
    for (let i = 0; i < 300; i += 1) {
      await cam.publishAsync(topics.telemetry(SITE, 'cam-a'), sample(i), { qos: 0 });
      if (i % 6 === 0) await cam.publishAsync(topics.alert(SITE, 'cam-a'), alert(i / 6), { qos: 1 });
    }
    // QoS 0 is not acknowledged: wait until the hub's link state counts all of it.
    const siteConsole = await box(files, 'console');
    let local: ReturnType<typeof bridgeStatePayload.parse> | undefined;
    siteConsole.on('message', (_t, payload) => (local = bridgeStatePayload.parse(json(payload))));
    await siteConsole.subscribeAsync(topics.bridge(SITE, 'hub'), { qos: 1 });
    await until(
      () => local !== undefined && local.dropped.telemetry + local.queued.messages >= 350,
      20_000,
      'the hub to take every message',
    );
    expect(local?.state).toBe('down');
    expect(local?.queued.bytes).toBeLessThanOrEqual(65_536);
    files.proxy.restore();
    const alerts = () => centre.got.filter((m) => m.topic.endsWith('/alert'));
    await until(() => alerts().length >= 50, 20_000, 'all 50 alerts');
    await until(
      () => centre.got.some((m) => m.topic.endsWith('/bridge') && json(m.payload).state === 'up'),
      20_000,
      'the link state at the centre',
    );
    const telemetry = centre.got
      .filter((m) => m.topic.endsWith('/cam-a/telemetry'))
      .map((m) => json(m.payload).seq as number);
    expect(new Set(alerts().map((m) => json(m.payload).id)).size).toBe(50);
    // The oldest telemetry went; what is left is the newest, in order.
    expect(telemetry.length).toBeGreaterThan(0);
    expect(telemetry.length).toBeLessThan(300);
    expect(telemetry).toEqual([...telemetry].sort((a, b) => a - b));
    expect(telemetry.at(-1)).toBe(299);
    const state = bridgeStatePayload.parse(
      json(centre.got.filter((m) => m.topic.endsWith('/bridge')).at(-1)!.payload),
    );
    expect(state.dropped.telemetry).toBe(300 - telemetry.length);
    expect(state.dropped.alert).toBe(0);
  });

  it('link state is retained on the site and at the centre; the centre hears `down` when the hub dies', async () => {
    const files = await hub();
    const centre = await ops();
    await centre.client.subscribeAsync(topics.bridge(SITE, 'hub'), { qos: 1 });
    const daemon = await run(files);
    await until(() => centre.got.some((m) => json(m.payload).state === 'up'), 10_000, '`up` at the centre');
    const siteConsole = await box(files, 'console');
    const local: Array<Record<string, unknown>> = [];
    siteConsole.on('message', (_t, payload) => local.push(json(payload)));
    await siteConsole.subscribeAsync(topics.bridge(SITE, 'hub'), { qos: 1 });
    files.proxy.down();
    await until(() => local.some((s) => s.state === 'down'), 10_000, '`down` on the site');
    expect(bridgeStatePayload.parse(local.find((s) => s.state === 'down')).since).toBeGreaterThan(0);
    files.proxy.restore();
    await until(() => local.at(-1)?.state === 'up', 20_000, '`up` again on the site');
    daemon.child.kill('SIGKILL');
    await until(
      () => centre.got.some((m) => json(m.payload).state === 'down'),
      20_000,
      'the last will at the centre',
    );
    const will = bridgeStatePayload.parse(
      json(centre.got.find((m) => json(m.payload).state === 'down')!.payload),
    );
    expect(will.since).toBeNull();
  });

  it("the hub's alert inbox crosses as retained entries; the centre acknowledges, stamped `centre` at the site, without echoes", async () => {
    const files = await hub({ extra: [`console: { host: 127.0.0.1, port: ${await freePort()} }`] });
    const centre = await ops();
    await centre.client.subscribeAsync(`${P}/inbox/#`, { qos: 1 });
    await run(files);
    const cam = await box(files, 'cam-a');
    await cam.publishAsync(topics.alert(SITE, 'cam-a'), alert(7), { qos: 1 });
    const entryTopic = topics.inboxEntry(SITE, 'site', 'cam-a', 'a-7');
    const entries = () =>
      centre.got.filter((m) => m.topic === entryTopic).map((m) => inboxEntryPayload.parse(json(m.payload)));
    await until(() => entries().length > 0, 10_000, 'the inbox entry at the centre');
    expect(entries()[0]).toMatchObject({ audience: 'site', device: 'cam-a', ack: null });
    expect(centre.got.find((m) => m.topic === entryTopic)?.retain).toBe(false); // live delivery
    // The centre acknowledges; the site's broker stamps it with the identity it authenticated.
    await centre.client.publishAsync(`${entryTopic}/ack`, '{"note":"seen at ops"}', { qos: 1 });
    await until(() => entries().some((e) => e.ack !== null), 10_000, 'the acknowledged entry at the centre');
    expect(entries().at(-1)?.ack).toMatchObject({ by: 'centre', role: 'console', note: 'seen at ops' });
    // A console at the site acknowledges another alert: it crosses up once, and nothing comes back.
    await cam.publishAsync(topics.alert(SITE, 'cam-a'), alert(8), { qos: 1 });
    const second = topics.inboxEntry(SITE, 'site', 'cam-a', 'a-8');
    await until(() => centre.got.some((m) => m.topic === second), 10_000, 'the second entry');
    const siteConsole = await box(files, 'console');
    const atSite: Array<Record<string, unknown>> = [];
    siteConsole.on('message', (_topic, payload) => atSite.push(json(payload)));
    await siteConsole.subscribeAsync(`${second}/ack`, { qos: 1 });
    await siteConsole.publishAsync(`${second}/ack`, '{}', { qos: 1 });
    await until(
      () => centre.got.some((m) => m.topic === `${second}/ack`),
      10_000,
      "the site console's acknowledgement at the centre",
    );
    await new Promise((resolve) => setTimeout(resolve, 1500)); // long enough for a loop to show
    const acks = centre.got.filter((m) => m.topic.endsWith('/ack')).map((m) => m.payload.toString());
    expect(acks).toHaveLength(2); // the centre's own (as it sent it) and the site console's (stamped)
    expect(json(Buffer.from(acks[1]!))).toMatchObject({ by: 'console', role: 'console' });
    // …and the site saw its own acknowledgement once: no echo came back down from the centre.
    expect(atSite).toEqual([expect.objectContaining({ by: 'console' })]);
    // A console that connects to the centre later gets the whole inbox as retained messages.
    const late = await ops();
    await late.client.subscribeAsync(`${P}/inbox/+/+/+`, { qos: 1 });
    await until(() => late.got.length >= 2, 5000, 'the retained inbox');
    expect(late.got.every((m) => m.retain)).toBe(true);
  });

  it('clip chunks cross only for a clip the centre asked for', async () => {
    const files = await hub();
    const centre = await ops();
    await centre.client.subscribeAsync(`${P}/cam-a/clip/#`, { qos: 1 });
    await run(files);
    const cam = await box(files, 'cam-a');
    const chunk = (clip: string, n: number) => topics.clipChunk(SITE, 'cam-a', clip, n);
    // The box answers clip-chunks as the daemon does: the asked chunks, raw bytes.
    await cam.subscribeAsync(topics.cmd(SITE, 'cam-a', 'clip-chunks'), { qos: 1 });
    cam.on('message', (_topic, payload) => {
      const { args } = json(payload) as { args: { clipId: string; chunks: number[] } };
      for (const n of args.chunks) void cam.publishAsync(chunk(args.clipId, n), Buffer.from([n]), { qos: 1 });
    });
    await cam.publishAsync(topics.clipManifest(SITE, 'cam-a', 'c1'), '{"clipId":"c1"}', { qos: 1 });
    await cam.publishAsync(chunk('c1', 0), Buffer.from([0]), { qos: 1 });
    await until(() => centre.got.length === 1, 10_000, 'the manifest');
    await centre.client.publishAsync(
      topics.cmd(SITE, 'cam-a', 'clip-chunks'),
      JSON.stringify({ id: 'r-1', args: { clipId: 'c1', chunks: [0, 1] } }),
      { qos: 1 },
    );
    await until(() => centre.got.length === 3, 10_000, 'the two chunks asked for');
    await cam.publishAsync(chunk('c2', 0), Buffer.from([0]), { qos: 1 });
    await cam.publishAsync(topics.clipManifest(SITE, 'cam-a', 'c3'), '{"clipId":"c3"}', { qos: 1 });
    await until(() => centre.got.length === 4, 10_000, 'the next manifest');
    // Different topics: MQTT orders each topic, not one against another (receivers key chunks by n).
    expect(centre.got.map((m) => m.topic).sort()).toEqual(
      [
        topics.clipManifest(SITE, 'cam-a', 'c1'),
        chunk('c1', 0),
        chunk('c1', 1),
        topics.clipManifest(SITE, 'cam-a', 'c3'),
      ].sort(),
    );
  });

  it('a client certificate from the centre CA works; a centre the bridge CA did not sign is refused with a hint', async () => {
    const files = await hub({ site: 'plant-c', cert: true });
    const centre = await ops();
    await centre.client.subscribeAsync('outpost/v1/plant-c/+/status', { qos: 1 });
    await run(files);
    await until(() => centre.got.some((m) => m.topic.endsWith('/hub/status')), 10_000, "the hub's status");

    const wrongCa = await hub({ bridge: { ca: testPki().ca } });
    const daemon = await run(wrongCa, false);
    const line = await daemon.waitForLog((l) => l.msg === 'bridge: central broker refused or unreachable');
    expect(String(line.hint)).toMatch(/certificate is not signed by bridge\.ca/);
    expect(await readFile(wrongCa.file, 'utf8')).toContain('bridge:');
  });
});
