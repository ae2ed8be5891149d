// bench:broker — the embedded broker beside Mosquitto, configured the same, in one run, with the same
// load generator (MQTT.js clients in this process): TLS, per-client passwords, an ACL and on-disk
// persistence on both. For QoS 0 and QoS 1: the highest rate sustained 1 publisher → 1 subscriber and
// 100 publishers → 1 console subscriber; and, first, on the fresh broker, p50/p99 publish→deliver
// latency at a site-like load (500 devices × 1 msg/s, QoS 1), with every message counted. CPU
// (user+system of the broker process) and memory (sampled, max: VmRSS, and RssAnon, the private part
// without the executable's pages) per broker. Prints a table, and as its last line one JSON object.
// Both brokers run side by side; each phase runs on one and then on the other (benchAll).
//
// The embedded broker runs as the real daemon (`outpost run`, hub role, no cameras). Its per-client
// publish-rate limit (500/s by default) is raised for the throughput phases, since Mosquitto has none.
// CPU per message is the broker's CPU time over a phase divided by the messages delivered in it.
//
//   npm run bench:broker -- [--seconds 5] [--site-seconds 20] [--devices 500]
//                           [--cpu-prof DIR] [--only outpost|mosquitto] [--phases site,qos0_1to1,…]
//                           [--daemon-flags "--trace-gc …"]
// --cpu-prof writes the daemon's V8 CPU profile into DIR (`node dist/bench/cpuprofile.js FILE` lists its
// top entries, and DIR/phases.json each phase's window for its `--phases`); --only runs one broker and
// --phases some phases (for profiling one; no ratios then); --daemon-flags adds Node flags to the
// daemon's command line (after the unit's NODE_OPTIONS, so they win).
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync, type MqttClient } from 'mqtt';
import { hashPassword } from '../daemon/src/mqtt/identities.js';
import { initSite, sitePaths } from '../provisioning/src/site.js';
import { cpuTicks, freePort, unitEnvironment, unitNodeFlags } from './proc.js';

const arg = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(name);
  return index > 0 ? Number(process.argv[index + 1]) || fallback : fallback;
};
const SECONDS = arg('--seconds', 5);
const SITE_SECONDS = arg('--site-seconds', 20);
const DEVICES = arg('--devices', 500);
const textArg = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1] : undefined;
};
const CPU_PROFILE_DIR = textArg('--cpu-prof');
const ONLY = textArg('--only');
/** Extra Node flags for the daemon, after its unit's NODE_OPTIONS (e.g. "--trace-gc"). */
const DAEMON_FLAGS = textArg('--daemon-flags')?.split(' ').filter(Boolean) ?? [];
/** Phases to run (site, qos0_1to1, qos0_100to1, qos1_1to1, qos1_100to1); all by default. */
const PHASES = textArg('--phases')?.split(',');
const runs = (phase: string): boolean => PHASES === undefined || PHASES.includes(phase);
const SITE = 'bench';
const P = `outpost/v1/${SITE}`;
const CLI = fileURLToPath(new URL('../daemon/src/cli.js', import.meta.url));
const TICKS_PER_SECOND = 100;
const PAYLOAD_BYTES = 64;
/** Messages sent and not yet received beyond which the throughput phases' publishers wait. */
const IN_TRANSIT = 5000;

interface Broker {
  name: 'outpost' | 'mosquitto';
  process: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

interface Pki {
  ca: Buffer;
  caFile: string;
  certFile: string;
  keyFile: string;
}

const password = (name: string): string => `pw-${name}-bench`;

/**
 * VmRSS, or RssAnon: the process's private memory, without the pages of the executable and its
 * libraries (for Node, ~40 MB of its own binary that the kernel can drop and read again).
 */
function rssMb(pid: number, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

/** Now on CLOCK_MONOTONIC, in µs (process.hrtime's clock, and V8's for profile timestamps on Linux). */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Run `work` while sampling the broker's CPU and RSS. */
async function measured<T>(
  broker: Broker,
  work: () => Promise<T>,
): Promise<{
  result: T;
  cpuPercent: number;
  cpuSeconds: number;
  rssMaxMb: number;
  anonMaxMb: number;
  /** The phase's start and end on CLOCK_MONOTONIC in µs, the clock of V8's CPU profiles. */
  windowUs: [number, number];
}> {
  const pid = broker.process.pid ?? 0;
  const ticks = cpuTicks(pid);
  const startUs = monotonicUs();
  const began = performance.now();
  let rssMaxMb = rssMb(pid);
  let anonMaxMb = rssMb(pid, 'RssAnon');
  const sampler = setInterval(() => {
    rssMaxMb = Math.max(rssMaxMb, rssMb(pid));
    anonMaxMb = Math.max(anonMaxMb, rssMb(pid, 'RssAnon'));
  }, 250);
  try {
    const result = await work();
    const seconds = (performance.now() - began) / 1000;
    const cpuSeconds = (cpuTicks(pid) - ticks) / TICKS_PER_SECOND;
    return {
      result,
      cpuPercent: (cpuSeconds / seconds) * 100,
      cpuSeconds,
      rssMaxMb,
      anonMaxMb,
      windowUs: [startUs, monotonicUs()],
    };
  } finally {
    clearInterval(sampler);
  }
}

async function waitForPort(port: number, child: ChildProcess, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode})`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${name} did not listen on ${port} within 60 s`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function startOutpost(dir: string, pki: Pki, names: string[]): Promise<Broker> {
  const identities = await Promise.all(
    names.map(async (name) => ({
      name,
      role: name === 'console' ? 'console' : 'device',
      password: await hashPassword(password(name)),
    })),
  );
  const identitiesFile = join(dir, 'identities.json');
  await writeFile(identitiesFile, JSON.stringify({ version: 1, site: SITE, identities }));
  const port = await freePort();
  const config = join(dir, 'outpost.yaml');
  await writeFile(
    config,
    [
      `site: ${SITE}`,
      'device: hub',
      `dataDir: ${join(dir, 'data')}`,
      'log:\n  level: warn',
      'telemetry:\n  intervalSeconds: 3600',
      'broker:',
      `  tcp:\n    port: ${await freePort()}`,
      `  mqtts:\n    host: 127.0.0.1\n    port: ${port}`,
      `  tls:\n    ca: ${pki.caFile}\n    cert: ${pki.certFile}\n    key: ${pki.keyFile}`,
      `  identitiesFile: ${identitiesFile}`,
      '  limits:\n    maxPublishRate: 1000000\n    maxConnections: 5000',
      'cameras: []',
    ].join('\n'),
  );
  const log = openSync(join(dir, 'outpost.log'), 'w');
  // The daemon runs with the environment its systemd unit gives it (malloc settings).
  const profile = CPU_PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROFILE_DIR] : [];
  const child = spawn(
    process.execPath,
    [...unitNodeFlags(), ...profile, ...DAEMON_FLAGS, CLI, 'run', '--config', config],
    {
      stdio: ['ignore', log, log],
      env: { ...process.env, ...unitEnvironment() },
    },
  );
  console.log(`outpost: daemon log in ${join(dir, 'outpost.log')}`);
  await waitForPort(port, child, 'outpost');
  return { name: 'outpost', process: child, port, stop: () => stopChild(child) };
}

async function startMosquitto(dir: string, pki: Pki, names: string[]): Promise<Broker> {
  const passwords = join(dir, 'mosquitto.passwd');
  await writeFile(passwords, names.map((name) => `${name}:${password(name)}`).join('\n') + '\n');
  await new Promise<void>((resolve, reject) => {
    const hash = spawn('mosquitto_passwd', ['-U', passwords], { stdio: 'inherit' });
    hash.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`mosquitto_passwd exited ${code}`)),
    );
  });
  const acl = join(dir, 'mosquitto.acl');
  // The same rules as the embedded broker's ACL (daemon/src/mqtt/acl.ts).
  await writeFile(
    acl,
    [
      `pattern write ${P}/%u/#`,
      `pattern read ${P}/%u/cmd/#`,
      `pattern readwrite ${P}/chat/#`,
      'user console',
      `topic read ${P}/#`,
      `topic write ${P}/+/cmd/#`,
    ].join('\n') + '\n',
  );
  const port = await freePort();
  const config = join(dir, 'mosquitto.conf');
  await writeFile(
    config,
    [
      `listener ${port} 127.0.0.1`,
      `cafile ${pki.caFile}`,
      `certfile ${pki.certFile}`,
      `keyfile ${pki.keyFile}`,
      'tls_version tlsv1.2',
      'allow_anonymous false',
      `password_file ${passwords}`,
      `acl_file ${acl}`,
      'persistence true',
      `persistence_location ${dir}/`,
      // No loss under load: Mosquitto's default queue of 1000 drops messages at these rates.
      'max_queued_messages 0',
      'max_inflight_messages 0',
      'max_connections -1',
      'log_dest none',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
    ].join('\n') + '\n',
  );
  const child = spawn('mosquitto', ['-c', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForPort(port, child, 'mosquitto');
  return { name: 'mosquitto', process: child, port, stop: () => stopChild(child) };
}

async function client(broker: Broker, pki: Pki, name: string): Promise<MqttClient> {
  const made = await connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
    ca: [pki.ca],
    username: name,
    password: password(name),
    clientId: `${name}.bench${Math.random().toString(16).slice(2, 8)}`,
    reconnectPeriod: 0,
    connectTimeout: 30_000,
    keepalive: 60,
  });
  // MQTT.js waits for 'drain' once per packet written into a full socket: many, by design, here.
  made.stream.setMaxListeners(0);
  made.on('error', (error) => console.error(`${broker.name}: client ${name}: ${error.message}`));
  return made;
}

/** Connect many clients, a few at a time (the broker hashes each password). */
async function clients(broker: Broker, pki: Pki, names: string[]): Promise<MqttClient[]> {
  const made: MqttClient[] = [];
  for (let i = 0; i < names.length; i += 20) {
    made.push(...(await Promise.all(names.slice(i, i + 20).map((name) => client(broker, pki, name)))));
  }
  return made;
}

function payload(sentAt: number, seq: number): Buffer {
  const buffer = Buffer.alloc(PAYLOAD_BYTES, 0x20);
  buffer.write(`${sentAt.toFixed(3)} ${seq}`);
  return buffer;
}

interface Throughput {
  sent: number;
  received: number;
  lost: number;
  perSecond: number;
}

/**
 * Publishers send as fast as their window allows for SECONDS; the console counts what arrives. A
 * sustained rate is one the broker delivers, not one it queues: publishing also pauses while more than
 * IN_TRANSIT messages are sent and not yet received (end-to-end flow control). Without it a QoS 0 flood
 * measured how fast each broker could queue without bound (both grew past 100 MB) and how long the
 * queue then took to drain, with the load generator's CPU split between sending and receiving.
 */
async function throughput(
  broker: Broker,
  pki: Pki,
  publishers: MqttClient[],
  names: string[],
  qos: 0 | 1,
  phase: string,
): Promise<Throughput> {
  const sink = await client(broker, pki, 'console');
  let received = 0;
  let lastAt = 0;
  // Each phase has its own topic, so nothing left over from an earlier phase is counted.
  const waiting: Array<() => void> = [];
  sink.on('message', (topic) => {
    if (!topic.endsWith(`/${phase}`)) return;
    received += 1;
    lastAt = performance.now();
    if (waiting.length > 0 && sent - received <= IN_TRANSIT / 2) waiting.splice(0).forEach(setImmediate);
  });
  await sink.subscribeAsync(`${P}/+/bench/${phase}`, { qos });
  const window =
    qos === 1
      ? Math.max(10, Math.floor(400 / publishers.length))
      : Math.max(50, Math.floor(2000 / publishers.length));
  let sent = 0;
  const began = performance.now();
  const stopAt = began + SECONDS * 1000;
  // Bounded: a publisher the broker disconnects never calls back; the phase still ends.
  const publishing = Promise.all(
    publishers.map(
      (publisher, index) =>
        new Promise<void>((resolve) => {
          const topic = `${P}/${names[index]}/bench/${phase}`;
          let outstanding = 0;
          let ended = false;
          const pump = (): void => {
            while (!ended && outstanding < window) {
              if (performance.now() >= stopAt) {
                ended = true;
                break;
              }
              if (sent - received >= IN_TRANSIT) {
                if (outstanding === 0) waiting.push(pump);
                return;
              }
              outstanding += 1;
              sent += 1;
              publisher.publish(topic, payload(performance.now(), sent), { qos }, () => {
                outstanding -= 1;
                if (ended) {
                  if (outstanding === 0) resolve();
                } else setImmediate(pump);
              });
            }
            if (ended && outstanding === 0) resolve();
          };
          pump();
        }),
    ),
  );
  await Promise.race([publishing, new Promise((resolve) => setTimeout(resolve, SECONDS * 1000 + 30_000))]);
  // Let deliveries in flight arrive (bounded).
  const deadline = performance.now() + 30_000;
  while (received < sent && performance.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 50));
  await sink.endAsync(true);
  const seconds = ((lastAt || performance.now()) - began) / 1000;
  return { sent, received, lost: sent - received, perSecond: Math.round(received / seconds) };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** DEVICES clients each publish one QoS 1 message a second for SITE_SECONDS; latency at the console. */
async function siteLoad(broker: Broker, pki: Pki, devices: MqttClient[], names: string[]) {
  const sink = await client(broker, pki, 'console');
  const latencies: number[] = [];
  const seen = new Set<string>();
  sink.on('message', (_topic, message) => {
    const [sentAt, seq] = message.toString().trim().split(' ');
    if (seq === undefined || seen.has(seq)) return;
    seen.add(seq);
    latencies.push(performance.now() - Number(sentAt));
  });
  await sink.subscribeAsync(`${P}/+/telemetry`, { qos: 1 });
  let sent = 0;
  const timers: NodeJS.Timeout[] = [];
  await new Promise<void>((resolve) => {
    devices.forEach((device, index) => {
      const topic = `${P}/${names[index]}/telemetry`;
      // Spread the devices over the second, as real boxes' clocks would be.
      const start = setTimeout(() => {
        const tick = (): void => {
          sent += 1;
          device.publish(topic, payload(performance.now(), sent), { qos: 1 });
        };
        tick();
        timers.push(setInterval(tick, 1000));
      }, Math.random() * 1000);
      timers.push(start);
    });
    setTimeout(resolve, SITE_SECONDS * 1000);
  });
  for (const timer of timers) clearInterval(timer);
  const deadline = performance.now() + 10_000;
  while (seen.size < sent && performance.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 50));
  await sink.endAsync(true);
  latencies.sort((a, b) => a - b);
  return {
    sent,
    received: seen.size,
    lost: sent - seen.size,
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
  };
}

/** A measured phase's figures, whole numbers for CPU and memory; CPU µs per message delivered. */
function rounded<T extends { received: number }>(m: {
  result: T;
  cpuPercent: number;
  cpuSeconds: number;
  rssMaxMb: number;
  anonMaxMb: number;
}) {
  return {
    ...m.result,
    cpuPercent: Math.round(m.cpuPercent),
    cpuUsPerMessage: Number(((m.cpuSeconds * 1e6) / Math.max(1, m.result.received)).toFixed(2)),
    rssMaxMb: Math.round(m.rssMaxMb),
    anonMaxMb: Math.round(m.anonMaxMb),
  };
}

/** Each broker's phases on the profile clock (--cpu-prof: written beside the profile as phases.json). */
const phaseWindows: Record<string, Record<string, [number, number]>> = {};

/** A broker under test, with the clients it keeps between phases and its figures so far. */
interface Contender {
  broker: Broker;
  figures: Record<string, unknown>;
  one: MqttClient[];
  hundred: MqttClient[];
}

/**
 * Both brokers run side by side, and each phase is run on one and then at once on the other, the order
 * alternating from phase to phase: the machine's load (other jobs on a shared box) drifts over minutes,
 * so a phase's two figures are taken within seconds of each other, not minutes apart.
 * The site load comes first, on the fresh brokers: its memory is what a box carries every day, and a
 * heap grown by the throughput floods would not shrink back for it.
 */
async function benchAll(contenders: Contender[], pki: Pki, deviceNames: string[]): Promise<void> {
  let turn = 0;
  const inTurn = (): Contender[] => (turn++ % 2 === 0 ? contenders : [...contenders].reverse());
  if (runs('site')) {
    for (const { broker, figures } of inTurn()) {
      const devices = await clients(broker, pki, deviceNames);
      const site = await measured(broker, () => siteLoad(broker, pki, devices, deviceNames));
      figures.site = rounded(site);
      (phaseWindows[broker.name] ??= {}).site = site.windowUs;
      await Promise.all(devices.map((c) => c.endAsync(true)));
    }
  }
  for (const contender of contenders) {
    contender.one = await clients(contender.broker, pki, deviceNames.slice(0, 1));
    contender.hundred = await clients(contender.broker, pki, deviceNames.slice(0, 100));
  }
  for (const qos of [0, 1] as const) {
    for (const size of ['1to1', '100to1'] as const) {
      const key = `qos${qos}_${size}`;
      if (!runs(key)) continue;
      for (const { broker, figures, one, hundred } of inTurn()) {
        const publishers = size === '1to1' ? one : hundred;
        const run = await measured(broker, () =>
          throughput(
            broker,
            pki,
            publishers,
            deviceNames.slice(0, publishers.length),
            qos,
            `qos${qos}-${size}`,
          ),
        );
        figures[key] = rounded(run);
        (phaseWindows[broker.name] ??= {})[key] = run.windowUs;
      }
    }
  }
  for (const { one, hundred } of contenders) {
    await Promise.all([...one, ...hundred].map((c) => c.endAsync(true)));
  }
}

/**
 * The floor under any broker written in Node: a bare Node TLS server (the daemon's Node, its
 * environment from outpost.service, the same certificate) that only reads, holding the site load's
 * connections, each sending 64 bytes a second. Its RSS is what Node and OpenSSL spend before any MQTT.
 */
async function tlsFloor(pki: Pki, connections: number): Promise<{ idleRssMb: number; rssMaxMb: number }> {
  const port = await freePort();
  const server = [
    "import { createServer } from 'node:tls';",
    "import { readFileSync } from 'node:fs';",
    `createServer({ cert: readFileSync(${JSON.stringify(pki.certFile)}), key: readFileSync(${JSON.stringify(pki.keyFile)}) },`,
    "  (socket) => { socket.on('data', () => {}); socket.on('error', () => {}); }).listen(" +
      String(port) +
      ", '127.0.0.1');",
  ].join('\n');
  const child = spawn(process.execPath, [...unitNodeFlags(), '--input-type=module', '-e', server], {
    env: { ...process.env, ...unitEnvironment() },
    stdio: 'inherit',
  });
  const sockets: TLSSocket[] = [];
  try {
    await waitForPort(port, child, 'bare TLS server');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idleRssMb = rssMb(child.pid ?? 0);
    const fake = { process: child } as Broker;
    const run = await measured(fake, async () => {
      for (let i = 0; i < connections; i += 20) {
        await Promise.all(
          Array.from(
            { length: Math.min(20, connections - i) },
            () =>
              new Promise<void>((resolve, reject) => {
                const socket = tlsConnect(
                  { port, host: '127.0.0.1', ca: [pki.ca], servername: 'localhost' },
                  () => resolve(),
                );
                socket.once('error', reject);
                sockets.push(socket);
              }),
          ),
        );
      }
      const data = Buffer.alloc(PAYLOAD_BYTES + 30, 0x20);
      const timer = setInterval(() => sockets.forEach((socket) => socket.write(data)), 1000);
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      clearInterval(timer);
    });
    return { idleRssMb: Math.round(idleRssMb), rssMaxMb: Math.round(run.rssMaxMb) };
  } finally {
    sockets.forEach((socket) => socket.destroy());
    await stopChild(child);
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-bench-broker-'));
  const siteDir = join(dir, 'site');
  await initSite(siteDir, { site: SITE, hubHost: 'localhost', hubIp: '127.0.0.1' });
  const paths = sitePaths(siteDir);
  const pki: Pki = {
    ca: readFileSync(paths.caCert),
    caFile: paths.caCert,
    certFile: paths.serverCert,
    keyFile: paths.serverKey,
  };
  const deviceNames = Array.from({ length: DEVICES }, (_, i) => `dev-${i}`);
  const names = [...deviceNames, 'console'];
  console.log(
    `bench:broker: ${SECONDS} s per throughput phase, ${DEVICES} devices × 1 msg/s for ${SITE_SECONDS} s, ${PAYLOAD_BYTES}-byte payloads, TLS + auth + ACL + persistence on both`,
  );

  const results: Record<string, Record<string, unknown>> = {};
  const starts = [startOutpost, startMosquitto].filter(
    (start) => ONLY === undefined || start === (ONLY === 'outpost' ? startOutpost : startMosquitto),
  );
  const contenders: Contender[] = [];
  try {
    for (const start of starts) {
      const broker = await start(await mkdtemp(join(dir, 'broker-')), pki, names);
      const pid = broker.process.pid ?? 0;
      const figures = {
        idleRssMb: Math.round(rssMb(pid)),
        idleAnonMb: Math.round(rssMb(pid, 'RssAnon')),
      };
      contenders.push({ broker, figures, one: [], hundred: [] });
      results[broker.name] = figures;
    }
    await benchAll(contenders, pki, deviceNames);
  } finally {
    await Promise.all(contenders.map(({ broker }) => broker.stop()));
  }
  for (const name of Object.keys(results)) console.log(`${name}: ${JSON.stringify(results[name])}`);

  if (CPU_PROFILE_DIR && phaseWindows.outpost) {
    const file = join(CPU_PROFILE_DIR, 'phases.json');
    await writeFile(file, JSON.stringify(phaseWindows.outpost));
    console.log(`outpost: phase windows in ${file} (node dist/bench/cpuprofile.js PROFILE --phases ${file})`);
  }

  const floor = ONLY === 'mosquitto' || !runs('site') ? undefined : await tlsFloor(pki, DEVICES + 1);
  if (floor) console.log(`bare Node TLS server: ${JSON.stringify(floor)}`);

  const ours = results.outpost ?? {};
  const theirs = results.mosquitto ?? {};
  const phases = ['qos0_1to1', 'qos0_100to1', 'qos1_1to1', 'qos1_100to1'];
  const phase = (r: Record<string, unknown>, key: string) =>
    r[key] as (Throughput & { cpuUsPerMessage: number }) | undefined;
  const ratio = (a: number | undefined, b: number | undefined): number =>
    a === undefined || b === undefined ? NaN : Number((a / b).toFixed(2));
  const ratios: Record<string, number> = {};
  for (const key of phases) {
    ratios[`${key}_throughput`] = ratio(phase(ours, key)?.perSecond, phase(theirs, key)?.perSecond);
    ratios[`${key}_cpu_per_message`] = ratio(
      phase(ours, key)?.cpuUsPerMessage,
      phase(theirs, key)?.cpuUsPerMessage,
    );
  }
  type Site = {
    p50Ms: number;
    p99Ms: number;
    cpuPercent: number;
    rssMaxMb: number;
    anonMaxMb: number;
    lost: number;
  };
  const siteOurs = ours.site as Site | undefined;
  const siteTheirs = theirs.site as Site | undefined;
  ratios.site_p99 = ratio(siteOurs?.p99Ms, siteTheirs?.p99Ms);
  ratios.site_cpu = ratio(siteOurs?.cpuPercent, Math.max(1, siteTheirs?.cpuPercent ?? NaN));
  ratios.site_rss = ratio(siteOurs?.rssMaxMb, siteTheirs?.rssMaxMb);

  console.log(
    '\nphase          outpost msg/s   mosquitto msg/s   ratio   CPU µs/msg outpost / mosquitto   ratio',
  );
  for (const key of phases) {
    const a = phase(ours, key);
    const b = phase(theirs, key);
    console.log(
      `${key.padEnd(14)} ${String(a?.perSecond ?? '-').padStart(13)}   ${String(b?.perSecond ?? '-').padStart(15)}   ${String(ratios[`${key}_throughput`]).padEnd(5)}   ${`${a?.cpuUsPerMessage ?? '-'} / ${b?.cpuUsPerMessage ?? '-'}`.padStart(30)}   ${ratios[`${key}_cpu_per_message`]}`,
    );
  }
  console.log(
    `site load: outpost p50 ${siteOurs?.p50Ms} ms p99 ${siteOurs?.p99Ms} ms lost ${siteOurs?.lost}; ` +
      `mosquitto p50 ${siteTheirs?.p50Ms} ms p99 ${siteTheirs?.p99Ms} ms lost ${siteTheirs?.lost}`,
  );
  const rssBound = floor ? floor.rssMaxMb + 16 : NaN;
  console.log(
    `targets: CPU per message ≤ 1.2× mosquitto in every phase; throughput ≥ 1.0×; site p99 ≤ 20 ms (outpost ${siteOurs?.p99Ms}) with 0 lost; ` +
      `RSS at the site load ≤ the Node TLS floor + 16 MB = ${rssBound} MB (outpost ${siteOurs?.rssMaxMb}, private ${siteOurs?.anonMaxMb}; idle ${String(ours.idleRssMb)})`,
  );
  if (floor)
    console.log(
      `floor: a bare Node TLS server holding the site load's ${DEVICES + 1} connections, no MQTT: RSS idle ${floor.idleRssMb} MB, loaded ${floor.rssMaxMb} MB`,
    );
  console.log(
    JSON.stringify({
      bench: 'broker',
      seconds: SECONDS,
      siteSeconds: SITE_SECONDS,
      devices: DEVICES,
      outpost: ours,
      mosquitto: theirs,
      nodeTlsFloor: floor ?? null,
      ratios,
    }),
  );
}

await main();
process.exit(0);
