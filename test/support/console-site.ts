// A whole site for the console's browser tests, bench:console and the docs' screenshots: the test Janus
// (Debian's, on loopback), a hub daemon built by app.ts in this process (real broker, cameras, inbox,
// console server; the panic button on a fake pin), a camera box (the built CLI in its own process,
// uplink to the hub over TLS, its camera on the same Janus), and the accounts `ops` (console) and
// `alice` (staff). Everything on 127.0.0.1 with free ports.
import { createHash, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import pino from 'pino';
import type { Page } from 'playwright-core';
import WebSocket from 'ws';
import { buildApp, type App } from '../../daemon/src/app.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { FakePin } from '../../daemon/src/gpio/fake-pin.js';
import { cameraBoxConfig } from './box.js';
import { identitiesJson, SITE, PEOPLE } from './broker.js';
import { janusServer, type TestJanus } from './janus.js';
import { testPki } from './pki.js';
import { freePort, freeUdpPortPair, runCli, tempDir, type Run } from './processes.js';

export const ACCOUNTS = {
  ops: { role: 'console' as const, password: 'pw-ops-console' },
  alice: { role: 'staff' as const, password: 'pw-alice-staff' },
};

export interface ConsoleSite {
  origin: string;
  /** base64 SHA-256 of the hub certificate's public key: what the browser is told to trust. */
  spki: string;
  app: App;
  pin: FakePin;
  janus: TestJanus;
  hubDataDir: string;
  /** The camera box `cam-a` (built CLI); restartBox() kills -9 it and starts it again. */
  box(): Run;
  killBox(): Promise<void>;
  startBox(): Promise<void>;
  /** Remove an account from the hub's identities and reload them (SIGHUP's path). */
  revoke(name: keyof typeof ACCOUNTS): Promise<void>;
  stop(): Promise<void>;
}

export interface ConsoleSiteOptions {
  /** The site's name (default the test site's). */
  site?: string;
  /** Start Debian's Janus and a camera box (default true); without, the hub alone (sfu.mode static). */
  video?: boolean;
  /** The hub's `bridge` section (test/support/sites.ts bridgeSection). */
  bridge?: Record<string, unknown>;
  /** Cameras on the hub (each 320×240@15 x264); the box adds one more. */
  hubCameras?: number;
  boxCameras?: number;
  preRollSeconds?: number;
  postRollSeconds?: number;
  renotifyMinutes?: number;
  /** The hub's first camera carries the latency stamp (bench:console's glass-to-glass): its size and rate. */
  stamp?: boolean;
  width?: number;
  height?: number;
  framerate?: number;
}

export async function startConsoleSite(options: ConsoleSiteOptions = {}): Promise<ConsoleSite> {
  const pki = testPki();
  const site = options.site ?? SITE;
  const video = options.video !== false;
  const janus = video ? await janusServer() : undefined;
  const hubDataDir = await tempDir('outpost-console-hub-');
  const identitiesFile = join(hubDataDir, 'identities.json');
  const writeIdentities = async (accounts: Partial<typeof ACCOUNTS>) =>
    writeFile(
      identitiesFile,
      await identitiesJson({ 'cam-a': PEOPLE['cam-a'] ?? { role: 'device' }, ...accounts }, site),
      {
        mode: 0o600,
      },
    );
  await writeIdentities(ACCOUNTS);
  const preRollDir = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/outpost-console-preroll-') : undefined;
  const [tcp, mqtts, consolePort] = [await freePort(), await freePort(), await freePort()];
  const hubCameras = await Promise.all(
    Array.from({ length: options.hubCameras ?? (video ? 2 : 0) }, async (_, i) => {
      // With `stamp`, the first camera carries the latency stamp (bench:console's glass-to-glass).
      const stamped = options.stamp === true && i === 0;
      return {
        name: `cam${i}`,
        width: stamped ? (options.width ?? 640) : 320,
        height: stamped ? (options.height ?? 360) : 240,
        framerate: stamped ? (options.framerate ?? 30) : 15,
        encoder: 'x264enc',
        ...(stamped ? { bitrateKbps: 1000 } : {}),
        source: stamped ? { type: 'test', stamp: true } : { type: 'test', pattern: 'ball' },
        rtp: { port: await freeUdpPortPair(), rtcp: true },
      };
    }),
  );
  const config = configSchema.parse({
    site,
    device: 'hub',
    dataDir: hubDataDir,
    log: { level: process.env.OUTPOST_TEST_LOG ?? 'warn' },
    broker: {
      tcp: { port: tcp },
      mqtts: { host: '127.0.0.1', port: mqtts },
      tls: { ca: pki.ca, cert: pki.serverCert, key: pki.serverKey },
      identitiesFile,
    },
    sfu: janus ? { mode: 'janus', host: '127.0.0.1', janus: { url: janus.url } } : { host: '127.0.0.1' },
    gpio: { button: { pin: 17 } },
    clips: {
      preRollSeconds: options.preRollSeconds ?? 1,
      postRollSeconds: options.postRollSeconds ?? 1,
      ...(preRollDir === undefined ? {} : { preRollDir }),
    },
    telemetry: { intervalSeconds: 5 },
    console: {
      host: '127.0.0.1',
      port: consolePort,
      alerts: { renotifyMinutes: options.renotifyMinutes ?? 5 },
    },
    cameras: hubCameras,
    ...(options.bridge ? { bridge: options.bridge } : {}),
  });
  const pin = new FakePin({ level: 1, description: 'console test panic button' });
  const log = pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
  const app = buildApp(config, log, { openPin: () => Promise.resolve(pin) });
  await app.start();

  const revoke = async (name: keyof typeof ACCOUNTS): Promise<void> => {
    await writeIdentities(
      Object.fromEntries(Object.entries(ACCOUNTS).filter(([account]) => account !== name)),
    );
    await app.reload();
  };
  if (!janus) {
    // The hub alone: no Janus, no camera box.
    const none = (): never => {
      throw new Error('this test site was started with video: false');
    };
    return {
      origin: `https://127.0.0.1:${consolePort}`,
      spki: spkiOf(readFileSync(pki.serverCert)),
      app,
      pin,
      get janus() {
        return none();
      },
      hubDataDir,
      box: none,
      killBox: () => Promise.resolve(),
      startBox: none,
      revoke,
      async stop() {
        await app.stop();
      },
    };
  }
  const boxCameras = await Promise.all(
    Array.from({ length: options.boxCameras ?? 1 }, async (_, i) => {
      const port = await freeUdpPortPair();
      return `  - name: cam${i}\n    width: 320\n    height: 240\n    framerate: 15\n    encoder: x264enc\n    source: { type: test, pattern: ball }\n    rtp: { port: ${port}, rtcp: true }`;
    }),
  );
  const box = await cameraBoxConfig(mqtts, [
    `sfu:\n  mode: janus\n  host: 127.0.0.1\n  janus:\n    url: ${janus.url}\n    mountpointIdBase: 2000`,
    `telemetry:\n  intervalSeconds: 5`,
    boxCameras.length > 0 ? `cameras:\n${boxCameras.join('\n')}` : 'cameras: []',
  ]);
  let boxRun: Run | undefined;
  const startBox = async () => {
    boxRun = runCli(['run', '--config', box.file]);
    await boxRun.waitForLog((line) => line.msg === 'uplink connected', 30_000);
  };
  const killBox = async () => {
    const run = boxRun;
    boxRun = undefined;
    if (!run || run.child.exitCode !== null || run.child.signalCode !== null) return;
    run.child.kill('SIGKILL');
    await run.exited();
  };
  await startBox();

  return {
    origin: `https://127.0.0.1:${consolePort}`,
    spki: spkiOf(readFileSync(pki.serverCert)),
    app,
    pin,
    janus,
    hubDataDir,
    box: () => {
      if (!boxRun) throw new Error('the camera box is not running');
      return boxRun;
    },
    killBox,
    startBox,
    revoke,
    async stop() {
      await killBox();
      await app.stop();
      await janus.stop();
    },
  };
}

export function spkiOf(pem: Buffer): string {
  const publicKey = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(publicKey).digest('base64');
}

/** An HTTPS request to the hub trusting the test CA; resolves with status, headers and body. */
export function hubRequest(
  url: string,
  /** `ca`: PEM the server's certificate is checked against (default the test PKI's CA). */
  options: { method?: string; headers?: Record<string, string>; body?: string; ca?: Buffer } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: options.method ?? 'GET',
        headers: options.headers,
        ca: options.ca ?? readFileSync(testPki().ca),
      },
      (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Fill in a console's login form at `origin` and submit it. */
export async function consoleLogIn(
  page: Page,
  origin: string,
  username: string,
  password: string,
): Promise<void> {
  await page.goto(`${origin}/`);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/**
 * What a console at `origin` answers a client without a login: the HTTP status of the session, box
 * health, clips and Janus, and of the MQTT WebSocket's upgrade (101 would be a way in).
 */
export async function answersWithoutLogin(
  origin: string,
  ca: Buffer = readFileSync(testPki().ca),
): Promise<Record<string, number>> {
  const json = { 'content-type': 'application/json' };
  const mqtt = await new Promise<number>((resolve) => {
    const socket = new WebSocket(`wss://127.0.0.1:${new URL(origin).port}/mqtt`, 'mqtt', { ca });
    socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
    socket.on('open', () => {
      socket.close();
      resolve(101);
    });
    socket.on('error', () => resolve(-1));
  });
  return {
    session: (await hubRequest(`${origin}/api/session`, { ca })).status,
    telemetry: (await hubRequest(`${origin}/api/telemetry`, { ca })).status,
    clips: (await hubRequest(`${origin}/api/clips`, { ca })).status,
    janus: (
      await hubRequest(`${origin}/janus`, { method: 'POST', headers: json, body: '{"janus":"create"}', ca })
    ).status,
    mqtt,
  };
}

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** How far the page scrolls sideways (px, > 0 is a problem) and axe-core's serious or critical findings. */
export async function pageProblems(page: Page): Promise<{ overflow: number; violations: string[] }> {
  const overflow = await page.evaluate<number>(
    'document.documentElement.scrollWidth - document.documentElement.clientWidth',
  );
  await page.evaluate(AXE);
  const violations = await page.evaluate<string[]>(`axe.run(document).then((result) => result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => v.id + ' (' + v.impact + ', ' + v.nodes.map((n) => n.target.join(' ')).join('; ') + ')'))`);
  return { overflow, violations };
}
