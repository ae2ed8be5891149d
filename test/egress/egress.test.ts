// Nothing leaves a box except to its configured peers (DESIGN.md, security model). A hub with a camera,
// the bridge and /metrics on runs in a network namespace of its own; tcpdump records every frame on its
// only interface. The peers sit on the other end of the veth: the SFU (a UDP receiver), the central
// broker (Debian's mosquitto, configured by outpost-provision centre) and the NTP peer; a site box
// (MQTT.js) and a scraper connect in. Every frame the box sent must be to a peer (a flow the box
// opened to a configured address and port), a reply on a connection opened from outside, or ARP for a
// peer. The control then sends one stray datagram from inside the namespace and the same check must
// name it.
import { createSocket, type Socket } from 'node:dgram';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { hubDataDir, PEOPLE, readPem, run, SITE } from '../support/broker.js';
import { testPki } from '../support/pki.js';
import {
  capture,
  createNetns,
  egressViolations,
  netnsAvailable,
  type Netns,
  type Packet,
  type Peer,
} from '../support/netns.js';
import { freePort, runCli, writeTemp, type Run } from '../support/processes.js';
import { centreWithSites, type CentreSetup } from '../support/sites.js';

const available = netnsAvailable();
let ns: Netns | undefined;
let setup: CentreSetup | undefined;
let sfu: Socket | undefined;
let daemon: Run | undefined;
let rtpPort = 0;
let rtpPackets = 0;
let peers: Peer[] = [];
let mqttsPort = 0;
let metricsPort = 0;
const TOKEN = 'egress-scrape-token-0123456789';

beforeAll(async () => {
  if (!available.ok) return;
  ns = createNetns();
  setup = await centreWithSites([{ site: SITE }], { ip: ns.hostIp });
  // The SFU: a UDP receiver on the host side.
  sfu = createSocket('udp4');
  sfu.on('message', () => (rtpPackets += 1));
  rtpPort = 20_000 + 2 * Math.floor(Math.random() * 10_000);
  await new Promise<void>((resolve) => sfu!.bind(rtpPort, ns!.hostIp, resolve));
  peers = [
    { what: 'SFU (RTP)', host: ns.hostIp, proto: 'udp', port: rtpPort },
    { what: 'SFU (RTCP)', host: ns.hostIp, proto: 'udp', port: rtpPort + 1 },
    { what: 'central broker', host: ns.hostIp, proto: 'tcp', port: setup.centre.port },
    { what: 'NTP peer', host: ns.hostIp, proto: 'udp', port: 123 },
  ];
  const pki = testPki();
  const { dataDir, identitiesFile } = await hubDataDir('outpost-egress-');
  const tokenFile = join(dataDir, 'metrics.token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  [mqttsPort, metricsPort] = [await freePort(), await freePort()];
  const kit = setup.kit(SITE);
  const config = await writeTemp(
    'outpost.yaml',
    [
      `site: ${SITE}`,
      'device: hub',
      'role: hub',
      `dataDir: ${dataDir}`,
      'broker:',
      `  mqtts: { host: 0.0.0.0, port: ${mqttsPort} }`,
      `  tls: { ca: ${pki.ca}, cert: ${pki.serverCert}, key: ${pki.serverKey} }`,
      `  identitiesFile: ${identitiesFile}`,
      `metrics: { host: 0.0.0.0, port: ${metricsPort}, bearerTokenFile: ${tokenFile} }`,
      `bridge: { url: 'mqtts://${ns.hostIp}:${setup.centre.port}', ca: ${setup.ca}, username: ${kit.username}, passwordFile: ${kit.passwordFile} }`,
      'telemetry: { intervalSeconds: 5 }',
      `sfu: { host: ${ns.hostIp} }`,
      `cameras:\n  - { name: cam0, width: 320, height: 240, framerate: 15, encoder: x264enc, rtp: { port: ${rtpPort} } }`,
    ].join('\n'),
  );
  // The daemon runs inside the namespace: `ip netns exec NAME node …` (ip execs: the same pid).
  daemon = runCli(['run', '--config', config], {}, ns.exec);
  await daemon.waitForLog((line) => line.msg === 'outpost running', 60_000);
  await daemon.waitForLog((line) => line.msg === 'bridge link up', 30_000);
});

afterAll(async () => {
  if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null) {
    daemon.child.kill('SIGTERM');
    await daemon.exited().catch(() => daemon?.child.kill('SIGKILL'));
  }
  sfu?.close();
  await setup?.stop();
  ns?.remove();
});

/** Scrape /metrics from outside, as Prometheus would: HTTPS to the box's address with the token. */
function scrape(box: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: box,
        port: metricsPort,
        path: '/metrics',
        headers: { authorization: `Bearer ${TOKEN}` },
        ca: readPem(testPki().ca),
        servername: 'localhost',
        // A connection per scrape: each one's SYN is in the capture that judges its replies.
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** What the box does for a while with clients connecting in: a box publishes an alert, a scrape. */
async function exercise(): Promise<void> {
  const box = await connectAsync(`mqtts://${ns!.boxIp}:${mqttsPort}`, {
    ca: [readPem(testPki().ca)],
    servername: 'localhost',
    username: 'cam-a',
    password: PEOPLE['cam-a']?.password,
    reconnectPeriod: 0,
  });
  await box.publishAsync(topics.alert(SITE, 'cam-a'), '{"id":"egress"}', { qos: 1 });
  expect(await scrape(ns!.boxIp)).toBe(200);
  await new Promise((resolve) => setTimeout(resolve, 6000)); // a telemetry sample, RTP, keep-alives
  expect(await scrape(ns!.boxIp)).toBe(200);
  await box.endAsync();
}

const flows = (packets: Packet[], box: string) =>
  new Set(
    packets
      .filter((p) => p.kind === 'ipv4' && p.src === box)
      .map((p) => `${String(p.proto)} ${p.dst}:${p.dport}`),
  );

describe.skipIf(!available.ok)(
  `nothing leaves a box but to its peers${available.ok ? '' : ` (skipped: ${available.why})`}`,
  () => {
    it('a hub with a camera, the bridge and metrics sends only to the SFU, the centre, NTP and its clients', async () => {
      const recording = await capture(ns!);
      const before = rtpPackets;
      await exercise();
      const packets = await recording.stop();
      const seen = flows(packets, ns!.boxIp);
      // It did its job: RTP reached the SFU, the bridge talked to the centre, replies went to clients.
      expect(rtpPackets - before).toBeGreaterThan(50);
      expect(seen).toContain(`udp ${ns!.hostIp}:${rtpPort}`);
      expect(seen).toContain(`tcp ${ns!.hostIp}:${setup!.centre.port}`);
      expect(packets.filter((p) => p.src === ns!.boxIp && p.sport === metricsPort).length).toBeGreaterThan(0);
      expect(packets.filter((p) => p.src === ns!.boxIp && p.sport === mqttsPort).length).toBeGreaterThan(0);
      const violations = egressViolations(packets, { ip: ns!.boxIp, mac: ns!.boxMac }, peers);
      expect(violations, `frames to no configured peer:\n${violations.join('\n')}`).toEqual([]);
    });

    it('control: one stray datagram from inside the namespace is caught and named', async () => {
      const recording = await capture(ns!);
      await exercise();
      // One DNS-looking datagram to the host side, as a resolver would send: nobody configured port 53.
      const sent = await run('ip', [
        'netns',
        'exec',
        ns!.name,
        process.execPath,
        '-e',
        `const s=require('node:dgram').createSocket('udp4');s.send(Buffer.from('stray'),53,'${ns!.hostIp}',()=>s.close())`,
      ]);
      expect(sent.code, sent.stderr).toBe(0);
      const packets = await recording.stop();
      const violations = egressViolations(packets, { ip: ns!.boxIp, mac: ns!.boxMac }, peers);
      expect(violations).toEqual([`UDP to ${ns!.hostIp}:53 (DNS)`]);
    });
  },
);
