// The console at the operations centre in a real browser (Debian's Chromium through playwright-core):
// Debian's mosquitto as the central broker, configured by outpost-provision centre; two sites, each a
// hub daemon with its own console and a panic button on a fake pin, bridged to it; and the centre's
// console (`outpost centre console`'s server) in front of the central broker. Each test is a thing a
// person at the centre does.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import mqttPacket, { type Packet } from 'mqtt-packet';
import WebSocket from 'ws';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigWith } from '../../daemon/src/config/load.js';
import { centreConsoleSchema, type CentreConsoleConfig } from '../../daemon/src/config/schema.js';
import { centreConsole } from '../../daemon/src/console/centre-console.js';
import type { ConsoleServer } from '../../daemon/src/console/server.js';
import type { InboxEntryPayload } from '../../daemon/src/mqtt/contract.js';
import { sitePrefix, topics } from '../../daemon/src/mqtt/topics.js';
import { headlessBrowser } from '../support/chromium.js';
import {
  ACCOUNTS,
  answersWithoutLogin,
  consoleLogIn,
  hubRequest,
  pageProblems,
  startConsoleSite,
  type ConsoleSite,
} from '../support/console-site.js';
import { freePort, requireBuilt, tempDir } from '../support/processes.js';
import { centrePaths } from '../../provisioning/src/centre.js';
import { bridgeSection, centreWithSites, type CentreSetup } from '../support/sites.js';

const SITES = ['plant-a', 'plant-b'] as const;
/** The centre's operator: an account of the central broker (outpost-provision centre console add). */
const OPERATOR = 'olga';

let setup: CentreSetup;
const sites = new Map<string, ConsoleSite>();
let centre: ConsoleServer;
let centreConfig: CentreConsoleConfig;
let origin: string;
/** The centre CA: it signed the central broker's certificate, which the centre console serves too. */
let centreCa: Buffer;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Every URL the centre's pages asked for, to check they all go to the centre console. */
const requested: string[] = [];

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  contexts.push(context);
  context.on('request', (request) => requested.push(request.url()));
  const page = await context.newPage();
  page.on('websocket', (socket) => requested.push(socket.url()));
  return page;
}

async function press(site: ConsoleSite): Promise<void> {
  site.pin.set(0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  site.pin.set(1);
}

/** Inbox entries shown, as `site/kind` (the site's name and the alert's kind, in page order). */
async function shownEntries(page: Page): Promise<string[]> {
  return page.evaluate<string[]>(`[...document.querySelectorAll('li.alert')].map((li) =>
    li.getAttribute('data-site') + '/' + li.querySelector('.line strong')?.textContent)`);
}

/** Log in to the centre console as the operator, as a script would: the session cookie's header. */
async function operatorCookie(): Promise<{ cookie: string }> {
  const login = await hubRequest(`${origin}/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: OPERATOR, password: setup.opsPassword }),
    ca: centreCa,
  });
  return { cookie: String(login.headers['set-cookie']).split(';')[0] ?? '' };
}

beforeAll(async () => {
  requireBuilt();
  setup = await centreWithSites(
    SITES.map((site) => ({ site })),
    { consoleName: OPERATOR },
  );
  for (const site of SITES)
    sites.set(site, await startConsoleSite({ site, video: false, bridge: bridgeSection(setup, site) }));
  // The console's config as `outpost-provision centre init` wrote it, on a free loopback port.
  const written = await loadConfigWith(centreConsoleSchema, centrePaths(setup.dir).consoleConf);
  const port = await freePort();
  centreConfig = {
    ...written,
    dataDir: await tempDir('outpost-centre-console-'),
    console: { ...written.console, host: '127.0.0.1', port },
  };
  centre = await centreConsole(centreConfig, pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }));
  await centre.start();
  centreCa = readFileSync(setup.ca);
  origin = `https://127.0.0.1:${port}`;
  browser = await headlessBrowser([centre.spki, ...[...sites.values()].map((site) => site.spki)]);
}, 180_000);

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  await centre?.stop();
  for (const site of sites.values()) await site.stop();
  await setup?.stop();
}, 60_000);

describe('the console at the operations centre', () => {
  it('reaches nothing without a login, refuses a wrong password and a site bridge account', async () => {
    expect(await answersWithoutLogin(origin, centreCa)).toEqual({
      session: 401,
      telemetry: 401,
      clips: 401,
      janus: 401,
      mqtt: 401,
    });
    const login = (username: string, password: string) =>
      hubRequest(`${origin}/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
        ca: centreCa,
      });
    const wrong = await login(OPERATOR, 'not-the-password');
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain('wrong user name or password');
    // A site's account on the site is not one at the centre.
    expect((await login('ops', ACCOUNTS.ops.password)).status).toBe(401);
    // A site's bridge account is the central broker's, but a machine's.
    const kit = setup.kit('plant-a');
    const bridge = await login(kit.username, (await readFile(kit.passwordFile, 'utf8')).trim());
    expect(bridge.status).toBe(403);
    // The page (the login form) is served with the strict CSP.
    const index = await hubRequest(`${origin}/`, { ca: centreCa });
    expect(index.headers['content-security-policy']).toContain("connect-src 'self'");
  });

  it('lists every site, holds a panic from each in one inbox, and the switcher filters the views', async () => {
    const page = await newPage();
    await consoleLogIn(page, origin, OPERATOR, setup.opsPassword);
    await page.getByRole('link', { name: /Alerts/ }).click();
    expect(await page.locator('.who').textContent()).toContain(`${OPERATOR} (console)`);
    // The sites come from their retained topics at the central broker: no list typed by hand.
    const switcher = page.getByLabel('Site');
    await expect
      .poll(() => switcher.locator('option').allTextContents(), { timeout: 15_000 })
      .toEqual(['All sites (2)', ...SITES]);
    for (const site of SITES) await press(sites.get(site) as ConsoleSite);
    await expect
      .poll(async () => (await shownEntries(page)).filter((entry) => entry.endsWith('/Panic')).sort(), {
        timeout: 15_000,
      })
      .toEqual(SITES.map((site) => `${site}/Panic`));
    expect(await page.locator('.banner').textContent()).toMatch(/PANIC at hub and \d+ more/);
    // One site chosen: only its alerts, only its boxes.
    await switcher.selectOption('plant-b');
    expect(new Set((await shownEntries(page)).map((entry) => entry.split('/')[0]))).toEqual(
      new Set(['plant-b']),
    );
    await page.getByRole('link', { name: /Devices/ }).click();
    await page.getByRole('heading', { name: 'Devices · plant-b' }).waitFor();
    expect(await page.getByRole('heading', { name: /^Devices · / }).allTextContents()).toEqual([
      'Devices · plant-b',
    ]);
    await switcher.selectOption('*');
    await expect
      .poll(() => page.getByRole('heading', { name: /^Devices · / }).allTextContents())
      .toEqual(SITES.map((site) => `Devices · ${site}`));
    // Live video stays on the sites: said plainly, and no tile tries to play.
    await page.getByRole('link', { name: /^Live/ }).click();
    await page.getByRole('heading', { name: 'Live video stays on the sites' }).waitFor();
    expect(await page.locator('video, figure.tile').count()).toBe(0);
    // On a 360 px phone too, no page scrolls sideways, and axe finds no serious or critical problem.
    await page.setViewportSize({ width: 360, height: 740 });
    for (const name of ['Live', 'Alerts', 'Chat', 'Devices']) {
      await page.getByRole('link', { name: new RegExp(`^${name}`) }).click();
      expect(await pageProblems(page), name).toEqual({ overflow: 0, violations: [] });
    }
  });

  it('an acknowledgement at the centre shows "acknowledged by" its operator at the centre and on the site\'s own console', async () => {
    const page = await newPage();
    await consoleLogIn(page, origin, OPERATOR, setup.opsPassword);
    await page.getByRole('link', { name: /Alerts/ }).click();
    await page.getByLabel('Site').selectOption('plant-a');
    const open = page.locator('li.alert[data-site="plant-a"].urgent').first();
    await open.waitFor({ timeout: 15_000 });
    const id = await open.getAttribute('data-alert');
    await open.getByRole('button', { name: 'Acknowledge' }).click();
    const atCentre = page.locator(`li.alert[data-site="plant-a"][data-alert="${id}"] .acked-by`);
    await atCentre.waitFor({ timeout: 10_000 });
    expect(await atCentre.textContent()).toContain(`acknowledged by ${OPERATOR} at the centre`);

    const onSite = await newPage();
    const plantA = sites.get('plant-a') as ConsoleSite;
    await consoleLogIn(onSite, plantA.origin, 'ops', ACCOUNTS.ops.password);
    await onSite.getByRole('link', { name: /Alerts/ }).click();
    const seen = onSite.locator(`li.alert[data-alert="${id}"] .acked-by`);
    await seen.waitFor({ timeout: 10_000 });
    expect(await seen.textContent()).toContain(`acknowledged by ${OPERATOR} at the centre`);
    // The other site's panic is still open.
    await page.getByLabel('Site').selectOption('plant-b');
    expect(await page.locator('li.alert[data-site="plant-b"].urgent').count()).toBeGreaterThan(0);
  });

  it("chat from the centre reaches the chosen site's console and a reply comes back; a command reaches a site's box and its reply comes back", async () => {
    const page = await newPage();
    await consoleLogIn(page, origin, OPERATOR, setup.opsPassword);
    await page.getByRole('link', { name: /Chat/ }).click();
    // Chat is per site.
    await page.getByText('Chat is per site: choose a site above.').waitFor();
    await page.getByLabel('Site').selectOption('plant-a');
    const onSite = await newPage();
    const plantA = sites.get('plant-a') as ConsoleSite;
    await consoleLogIn(onSite, plantA.origin, 'alice', ACCOUNTS.alice.password);
    await onSite.getByRole('link', { name: /Chat/ }).click();
    const text = `centre to plant-a ${Date.now()}`;
    await page.getByLabel('Message to #general').fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
    const there = onSite.locator('.messages li', { hasText: text });
    await there.waitFor({ timeout: 10_000 });
    expect(await there.locator('.from').textContent()).toContain('centre');
    expect(await page.locator('.messages li', { hasText: text }).locator('.from').textContent()).toContain(
      'centre',
    );
    const reply = `plant-a to centre ${Date.now()}`;
    await onSite.getByLabel('Message to #general').fill(reply);
    await onSite.getByRole('button', { name: 'Send' }).click();
    const back = page.locator('.messages li', { hasText: reply });
    await back.waitFor({ timeout: 10_000 });
    expect(await back.locator('.from').textContent()).toContain('alice');
    // A command to plant-b's hub crosses down, and the hub's answer comes back up to this page.
    await page.getByLabel('Site').selectOption('plant-b');
    await page.getByRole('link', { name: /Devices/ }).click();
    await page
      .locator('article.device[data-device="hub"]')
      .getByRole('button', { name: 'Ask for a clip' })
      .click();
    const result = page.locator('article.device[data-device="hub"] .result');
    await expect
      .poll(() => result.textContent(), { timeout: 15_000 })
      .toMatch(/^Clip from hub: (?!.*did not answer)/);
  });

  it("the page's MQTT connection is its login's account at the central broker, whatever its CONNECT says", async () => {
    const cookie = (await operatorCookie()).cookie;
    const socket = new WebSocket(`wss://127.0.0.1:${new URL(origin).port}/mqtt`, 'mqtt', {
      ca: centreCa,
      headers: { cookie },
    });
    // A site bridge's client id, asking for its persistent session: a page must not push the bridge off.
    const clientId = 'outpost-bridge-plant-a';
    const connack = new Promise<Packet>((resolve, reject) => {
      const parser = mqttPacket.parser();
      parser.on('packet', resolve);
      socket.on('message', (data: Buffer) => parser.parse(data));
      socket.on('error', reject);
    });
    await new Promise((resolve) => socket.once('open', resolve));
    socket.send(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: false,
        keepalive: 30,
        clientId,
        username: 'mallory',
        password: Buffer.from('anything'),
      }),
    );
    expect(await connack).toMatchObject({ cmd: 'connack', returnCode: 0 });
    socket.close();
    // Mosquitto names the account it authenticated: the login's, not the one the CONNECT claimed, with
    // a client id of the login's own and a clean session.
    expect(setup.centre.log()).toMatch(
      new RegExp(`as ${OPERATOR}\\.console-[0-9a-f]{12} \\(p2, c1, k30, u'${OPERATOR}'\\)`),
    );
  });

  it("a centre account cannot acknowledge in another operator's name", async () => {
    // The central broker's ACL lets an account write only …/ack/{its own name}, and the bridge drops a
    // plain …/ack that names an operator: a forged name never crosses, and the operator's own
    // acknowledgement, sent after them on the same connection, is the first.
    const client = await setup.ops();
    const entries = new Map<string, InboxEntryPayload>();
    client.on('message', (_topic, payload) => {
      if (payload.length === 0) return;
      const entry = JSON.parse(payload.toString()) as InboxEntryPayload;
      entries.set(`${entry.device}/${entry.key}`, entry);
    });
    await client.subscribeAsync(`${sitePrefix('plant-b')}/inbox/site/+/+`, { qos: 1 });
    const open = () => [...entries.values()].find((entry) => entry.alert.kind === 'panic' && !entry.ack);
    await expect.poll(open, { timeout: 10_000 }).toBeDefined();
    const entry = open() as InboxEntryPayload;
    const at = [entry.audience, entry.device, entry.key] as const;
    await client.publishAsync(topics.inboxAckBy('plant-b', ...at, 'mallory'), '{}', { qos: 1 });
    // …nor on the plain …/ack with an operator in the payload.
    const plainAck = `${topics.inboxEntry('plant-b', ...at)}/ack`;
    await client.publishAsync(plainAck, '{"operator":"mallory"}', { qos: 1 });
    await client.publishAsync(topics.inboxAckBy('plant-b', ...at, OPERATOR), '{"note":"on it"}', { qos: 1 });
    await expect
      .poll(() => entries.get(`${entry.device}/${entry.key}`)?.ack, { timeout: 10_000 })
      .toMatchObject({ by: 'centre', operator: OPERATOR, note: 'on it' });
  });

  it('a restart of the centre console ends its logins: it keeps no password on disk', async () => {
    const cookie = await operatorCookie();
    expect((await hubRequest(`${origin}/api/session`, { headers: cookie, ca: centreCa })).status).toBe(200);
    await centre.stop();
    centre = await centreConsole(centreConfig, pino({ level: 'silent' }));
    await centre.start();
    expect((await hubRequest(`${origin}/api/session`, { headers: cookie, ca: centreCa })).status).toBe(401);
  });

  it('every request the centre pages made went to the centre console', () => {
    expect(requested.length).toBeGreaterThan(5);
    const host = new URL(origin).host;
    // The one page opened on plant-a's own console went to plant-a's hub.
    const allowed = new Set([host, new URL(sites.get('plant-a')?.origin ?? origin).host]);
    const elsewhere = requested.filter(
      (url) => !url.startsWith('blob:') && !url.startsWith('data:') && !allowed.has(new URL(url).host),
    );
    expect(elsewhere).toEqual([]);
  });
});
