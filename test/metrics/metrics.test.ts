// Prometheus /metrics on a running daemon, scraped by Debian's real `prometheus` over HTTPS with a
// bearer token, and read back through Prometheus's query API; no anonymous scraping.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_ADMIN, localAdminFile } from '../../daemon/src/mqtt/broker.js';
import { topics } from '../../daemon/src/mqtt/topics.js';
import { readPem, run } from '../support/broker.js';
import { testCameraYaml } from '../support/box.js';
import { testPki } from '../support/pki.js';
import { cliRuns, freePort, REPO, tempDir, until, writeTemp, type Run } from '../support/processes.js';

const TOKEN = 'scrape-token-0123456789abcdef';
const BASIC = { user: 'prometheus', password: 'basic-password-0123456789' };
const runs = cliRuns();
let daemon: Run;
let prometheus: ChildProcess | undefined;
let prometheusLog = '';
let metricsPort = 0;
let promPort = 0;
let brokerPort = 0;
let dataDir = '';

function get(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: metricsPort,
        path,
        headers,
        ca: readPem(testPki().ca),
        servername: 'localhost',
      },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function query(
  expr: string,
): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const response = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const json = (await response.json()) as {
    status: string;
    data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  expect(json.status).toBe('success');
  return json.data.result;
}

/** Query until `ok` holds (Prometheus scrapes every second), at most 30 s; the last value. */
async function settles(expr: string, ok: (value: number) => boolean, what: string): Promise<number> {
  const deadline = Date.now() + 30_000;
  let last = Number.NaN;
  while (Date.now() < deadline) {
    last = Number((await query(expr))[0]?.value[1] ?? Number.NaN);
    if (ok(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}: ${expr} = ${last}`);
}

beforeAll(async () => {
  const pki = testPki();
  dataDir = await tempDir('outpost-metrics-');
  [metricsPort, promPort, brokerPort] = [await freePort(), await freePort(), await freePort()];
  const tokenFile = join(dataDir, 'metrics.token');
  const basicFile = join(dataDir, 'metrics.basic');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  await writeFile(basicFile, `${BASIC.password}\n`, { mode: 0o600 });
  const config = await writeTemp(
    'outpost.yaml',
    [
      'site: plant',
      'device: hub',
      `dataDir: ${dataDir}`,
      `broker:\n  tcp:\n    port: ${brokerPort}`,
      `metrics:\n  host: 127.0.0.1\n  port: ${metricsPort}\n  tls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }\n  bearerTokenFile: ${tokenFile}\n  basicAuth: { username: ${BASIC.user}, passwordFile: ${basicFile} }`,
      'clips: { preRollSeconds: 1, postRollSeconds: 1 }',
      await testCameraYaml(),
    ].join('\n'),
  );
  daemon = runs.start(['run', '--config', config]);
  await daemon.waitForLog((line) => line.msg === 'outpost running', 30_000);

  const promDir = await tempDir('outpost-prometheus-');
  const target = `127.0.0.1:${metricsPort}`;
  await writeFile(
    join(promDir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, scrape_timeout: 1s }',
      'scrape_configs:',
      '  - job_name: outpost',
      '    scheme: https',
      `    tls_config: { ca_file: ${pki.ca}, server_name: localhost }`,
      `    authorization: { type: Bearer, credentials_file: ${tokenFile} }`,
      `    static_configs: [{ targets: ['${target}'], labels: { site: plant, device: hub } }]`,
      '  - job_name: anonymous',
      '    scheme: https',
      `    tls_config: { ca_file: ${pki.ca}, server_name: localhost }`,
      `    static_configs: [{ targets: ['${target}'] }]`,
    ].join('\n'),
  );
  prometheus = spawn(
    'prometheus',
    [
      `--config.file=${join(promDir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(promDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prometheus.stderr?.on('data', (chunk: Buffer) => (prometheusLog += chunk.toString()));
  await until(
    () => prometheusLog.includes('Server is ready to receive web requests'),
    30_000,
    'prometheus to start',
  ).catch((error: Error) => {
    throw new Error(`${error.message}; prometheus said:\n${prometheusLog}`);
  });
});

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((resolve) => prometheus?.once('exit', resolve));
    prometheus.kill('SIGTERM');
    await exited;
  }
  await runs.stopAll();
});

describe('/metrics', () => {
  it("docs/metrics.md's alert rules pass promtool check rules", async () => {
    const text = await readFile(join(REPO, 'docs/metrics.md'), 'utf8');
    const rules = /```yaml\n(# outpost\.rules\.yml[\s\S]*?)```/.exec(text)?.[1];
    expect(rules, 'the rules block in docs/metrics.md').toBeDefined();
    const file = join(await tempDir('outpost-rules-'), 'outpost.rules.yml');
    await writeFile(file, rules ?? '');
    const checked = await run('promtool', ['check', 'rules', file]);
    expect(checked.code, `${checked.stdout}${checked.stderr}`).toBe(0);
    expect(checked.stdout).toMatch(/SUCCESS: 7 rules found/);
  });

  it('is scraped by Debian prometheus over HTTPS with a bearer token; an anonymous scrape is refused', async () => {
    expect(await settles('up{job="outpost"}', (v) => v === 1, 'the authenticated target up')).toBe(1);
    expect(await settles('up{job="anonymous"}', (v) => v === 0, 'the anonymous target down')).toBe(0);
    expect(await settles('outpost_camera_up{camera="cam0"}', (v) => v === 1, 'the camera streaming')).toBe(1);
    expect(
      await settles('outpost_camera_fps{camera="cam0"}', (v) => v > 5, 'the camera fps'),
    ).toBeGreaterThan(5);
    expect(
      await settles('outpost_camera_rtp_packets_total{camera="cam0"}', (v) => v > 0, 'RTP packets counted'),
    ).toBeGreaterThan(0);
    expect(
      await settles('outpost_broker_clients_connected', (v) => v >= 1, 'the uplink counted'),
    ).toBeGreaterThanOrEqual(1);
    expect(await settles('outpost_uplink_up', (v) => v === 1, 'the uplink up')).toBe(1);
    expect(await settles('outpost_disk_size_bytes', (v) => v > 0, 'the disk size')).toBeGreaterThan(0);
    const info = await query('outpost_info');
    expect(info[0]?.metric).toMatchObject({ site: 'plant', device: 'hub', role: 'hub' });
  });

  it('counts broker messages and the panic press → alert time as a histogram', async () => {
    const password = (await readFile(localAdminFile(dataDir), 'utf8')).trim();
    const admin = await connectAsync(`mqtt://127.0.0.1:${brokerPort}`, {
      username: LOCAL_ADMIN,
      password,
      clientId: `${LOCAL_ADMIN}.metrics-test`,
      reconnectPeriod: 0,
    });
    const before = await settles('outpost_broker_messages_received_total', (v) => v >= 0, 'the counter');
    for (let i = 0; i < 3; i += 1)
      await admin.publishAsync(topics.cmd('plant', 'hub', 'clip'), JSON.stringify({ id: `p-${i}` }), {
        qos: 1,
      });
    await admin.endAsync();
    expect(
      await settles('outpost_panic_alert_seconds_count', (v) => v === 3, 'three panic alerts observed'),
    ).toBe(3);
    expect(
      await settles('outpost_panic_alert_seconds_bucket{le="1"}', (v) => v === 3, 'all under a second'),
    ).toBe(3);
    expect(
      await settles(
        'outpost_broker_messages_received_total',
        (v) => v >= before + 3,
        'the publishes counted',
      ),
    ).toBeGreaterThanOrEqual(before + 3);
  });

  it('answers 401 without or with a wrong credential, and to basic auth with the right password', async () => {
    expect((await get('/metrics')).status).toBe(401);
    expect((await get('/metrics')).headers['www-authenticate']).toMatch(/Bearer/);
    expect((await get('/metrics', { authorization: `Bearer ${TOKEN}x` })).status).toBe(401);
    expect((await get('/metrics', { authorization: 'Bearer ' })).status).toBe(401);
    const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
    expect((await get('/metrics', { authorization: basic(BASIC.user, 'wrong') })).status).toBe(401);
    const ok = await get('/metrics', { authorization: basic(BASIC.user, BASIC.password) });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/^outpost_broker_clients_connected \d+$/m);
    expect((await get('/', { authorization: `Bearer ${TOKEN}` })).status).toBe(404);
  });
});
