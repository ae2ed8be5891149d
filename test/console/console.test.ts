// The site console in a real browser (Debian's Chromium through playwright-core) against a real site:
// the hub daemon (app.ts: broker, cameras, inbox, console server; panic button on a fake pin), Debian's
// Janus, and a camera box (the built CLI) with its own camera. Each test is a thing a person does.
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
import { requireBuilt } from '../support/processes.js';

let site: ConsoleSite;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Every URL any page asked for (HTTP requests and WebSockets), to check they all go to the hub. */
const requested: string[] = [];

async function newPage(viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  context.on('request', (request) => requested.push(request.url()));
  const page = await context.newPage();
  page.on('websocket', (socket) => requested.push(socket.url()));
  return page;
}

async function logIn(page: Page, user: keyof typeof ACCOUNTS | 'wrong'): Promise<void> {
  await consoleLogIn(
    page,
    site.origin,
    user === 'wrong' ? 'ops' : user,
    user === 'wrong' ? 'not-the-password' : ACCOUNTS[user].password,
  );
}

/** Decoded frames of every video on the page (getVideoPlaybackQuality). */
function framesOf(page: Page): Promise<Record<string, number>> {
  // Browser-side code as a string: the test project has Node's types, not the DOM's.
  return page.evaluate(`Object.fromEntries([...document.querySelectorAll('figure.tile')].map((tile) => [
    tile.getAttribute('data-camera') ?? '?',
    tile.querySelector('video')?.getVideoPlaybackQuality().totalVideoFrames ?? 0,
  ]))`);
}

async function press(): Promise<void> {
  site.pin.set(0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  site.pin.set(1);
}

beforeAll(async () => {
  requireBuilt();
  site = await startConsoleSite();
  browser = await headlessBrowser([site.spki]);
}, 120_000);

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  await site?.stop();
}, 60_000);

describe('site console', () => {
  it('refuses a wrong password with a clear message, and logs in with the right one', async () => {
    const page = await newPage();
    await logIn(page, 'wrong');
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('wrong user name or password');
    await logIn(page, 'ops');
    await page.getByRole('link', { name: 'Live' }).waitFor();
    expect(await page.locator('.who').textContent()).toContain('ops (console)');
    // The password is nowhere in the page's storage.
    const stored = await page.evaluate<string>(
      'JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie',
    );
    expect(stored).not.toContain(ACCOUNTS.ops.password);
    // The session cookie is HttpOnly, Secure and SameSite=Strict.
    const cookie = (await page.context().cookies()).find((c) => c.name === 'outpost_session');
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict' });
    const header = { cookie: `outpost_session=${cookie?.value ?? ''}` };
    expect((await hubRequest(`${site.origin}/api/session`, { headers: header })).status).toBe(200);
    // Log out: back to the login page, and the old cookie no longer opens anything at the hub.
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('User name').waitFor();
    expect((await hubRequest(`${site.origin}/api/session`, { headers: header })).status).toBe(401);
  });

  it('reaches no video, clip, topic or history without a login', async () => {
    expect(await answersWithoutLogin(site.origin)).toEqual({
      session: 401,
      telemetry: 401,
      clips: 401,
      janus: 401,
      mqtt: 401,
    });
    // The page itself (the login form) is served, with a strict CSP and no inline script.
    const index = await hubRequest(`${site.origin}/`);
    expect(index.status).toBe(200);
    expect(index.headers['content-security-policy']).toContain("script-src 'self'");
    expect(index.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
  });

  it('a console operator sees every camera tile play, with decoded frames advancing', async () => {
    const page = await newPage();
    const janusPosts: string[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST' && new URL(request.url()).pathname.startsWith('/janus'))
        janusPosts.push(request.postData() ?? '');
    });
    await logIn(page, 'ops');
    const expected = ['cam-a/cam0', 'hub/cam0', 'hub/cam1'];
    await expect
      .poll(async () => Object.keys(await framesOf(page)).sort(), { timeout: 20_000 })
      .toEqual(expected);
    await expect
      .poll(async () => Object.values(await framesOf(page)).every((frames) => frames > 5), {
        timeout: 20_000,
      })
      .toBe(true);
    const before = await framesOf(page);
    await page.waitForTimeout(1500);
    const after = await framesOf(page);
    for (const camera of expected) expect(after[camera], camera).toBeGreaterThan(before[camera] ?? 0);
    // Each tile says the camera's state and its measured rates.
    await expect
      .poll(() => page.locator('figure.tile .state.streaming').count(), { timeout: 40_000 })
      .toBe(3);
    // Janus is the DTLS client (the page answers a=setup:passive): its ClientHello goes out the moment
    // its ICE pair is chosen, where the browser's went out earlier and was resent 50, 100, 200 ms on.
    expect(
      await page.evaluate<Array<string | undefined>>(
        '[...window.outpostConsole.tiles.values()].map((tile) => tile.dtlsRole)',
      ),
    ).toEqual(['server', 'server', 'server']);
    // A tile reaches Janus's offer in one request to the hub (`view`), not attach, watch and a long poll.
    const verbs = janusPosts.map((body) => {
      const request = JSON.parse(body) as { janus: string; body?: { request?: string } };
      return request.body?.request ?? request.janus;
    });
    expect(verbs.filter((verb) => verb === 'view')).toHaveLength(3);
    expect(verbs.filter((verb) => verb === 'start')).toHaveLength(3);
    expect(verbs.filter((verb) => verb === 'watch' || verb === 'attach')).toEqual([]);
  });

  it("a logged-in operator's Janus requests are a viewer's only: no listing, no mountpoint changes, no one else's session", async () => {
    const [mine, theirs] = [await newPage(), await newPage()];
    await logIn(mine, 'ops');
    await logIn(theirs, 'ops');
    await mine.getByRole('link', { name: 'Live' }).waitFor();
    await theirs.getByRole('link', { name: 'Live' }).waitFor();
    const janus = (page: Page, path: string, body: object) =>
      page.evaluate<{
        status: number;
        body: { janus?: string; data?: { id?: number }; error?: { reason?: string } };
      }>(
        `fetch('/janus${path}', { method: 'POST', body: ${JSON.stringify(JSON.stringify(body))} })
          .then(async (r) => ({ status: r.status, body: await r.json() }))`,
      );
    const session = (await janus(mine, '', { janus: 'create', transaction: 't1' })).body.data?.id;
    expect(session).toBeTypeOf('number');
    const handle = (
      await janus(mine, `/${session}`, {
        janus: 'attach',
        plugin: 'janus.plugin.streaming',
        transaction: 't2',
      })
    ).body.data?.id;
    expect(handle).toBeTypeOf('number');
    for (const request of [
      { request: 'list' },
      { request: 'info', id: 1000 },
      { request: 'create', type: 'rtp', id: 999, media: [] },
      { request: 'destroy', id: 1000 },
      { request: 'configure', min_delay: 0, bitrate: 1 },
    ]) {
      const reply = await janus(mine, `/${session}/${handle}`, {
        janus: 'message',
        body: request,
        transaction: 't3',
      });
      expect(reply.status, JSON.stringify(request)).toBe(403);
    }
    expect(
      (
        await janus(mine, `/${session}`, {
          janus: 'attach',
          plugin: 'janus.plugin.videoroom',
          transaction: 't4',
        })
      ).status,
    ).toBe(403);
    // Another login (even of the same account) cannot use that session.
    expect((await janus(theirs, `/${session}`, { janus: 'keepalive', transaction: 't5' })).status).toBe(403);
    // What a viewer needs goes through.
    const watch = await janus(mine, `/${session}/${handle}`, {
      janus: 'message',
      body: { request: 'watch', id: 1000 },
      transaction: 't6',
    });
    expect(watch.status).toBe(200);
    expect(watch.body.janus).toBe('ack');
    // The hub's `view`: a handle of this session watching the mountpoint, and Janus's offer, at once.
    const view = (body: object) =>
      mine.evaluate<{
        status: number;
        body: { janus?: string; data?: { id?: number }; jsep?: { type?: string; sdp?: string } };
      }>(
        `fetch('/janus/${session}', { method: 'POST', body: ${JSON.stringify(JSON.stringify(body))} })
          .then(async (r) => ({ status: r.status, body: await r.json() }))`,
      );
    const viewed = await view({ janus: 'view', mountpoint: 1000, min_delay: 0, max_delay: 0 });
    expect(viewed.status).toBe(200);
    expect(viewed.body.jsep?.type).toBe('offer');
    expect(viewed.body.jsep?.sdp).toContain('m=video');
    const viewHandle = viewed.body.data?.id;
    expect(viewHandle).toBeTypeOf('number');
    // That handle is this login's: a viewer's requests on it go through, others do not.
    expect(
      (await janus(mine, `/${session}/${viewHandle}`, { janus: 'message', body: { request: 'pause' } }))
        .status,
    ).toBe(200);
    expect(
      (await janus(mine, `/${session}/${viewHandle}`, { janus: 'message', body: { request: 'list' } }))
        .status,
    ).toBe(403);
    expect((await janus(theirs, `/${session}`, { janus: 'view', mountpoint: 1000 })).status).toBe(403);
    // Nothing but a mountpoint and the playout delay.
    expect((await view({ janus: 'view', mountpoint: 1000, pin: 'x' })).status).toBe(403);
    expect((await view({ janus: 'view', mountpoint: 'all' })).status).toBe(400);
    // A mountpoint that does not exist: Janus's reason, no offer.
    const missing = await view({ janus: 'view', mountpoint: 999_999 });
    expect(missing.body.janus).toBe('error');
    expect(missing.body.jsep).toBeUndefined();
  });

  it('a panic press shows the alert, an acknowledgement in one console shows "acknowledged by" in the other within 1 s, and a reload keeps it', async () => {
    const [first, second] = [await newPage(), await newPage()];
    await logIn(first, 'ops');
    await logIn(second, 'ops');
    for (const page of [first, second]) await page.getByRole('link', { name: /Alerts/ }).click();
    const before = await first.locator('li.alert').count();
    await press();
    await expect.poll(() => first.locator('li.alert').count(), { timeout: 5000 }).toBe(before + 1);
    const newest = first.locator('li.alert').first();
    expect(await newest.textContent()).toMatch(/Panic.*hub/);
    await expect.poll(() => second.locator('li.alert.urgent').count()).toBeGreaterThan(0);
    expect(await first.locator('.banner').textContent()).toContain('PANIC at hub');
    const id = await newest.getAttribute('data-alert');
    await newest.getByRole('button', { name: 'Acknowledge' }).click();
    const clickedAt = Date.now();
    const seen = second.locator(`li.alert[data-alert="${id}"] .acked-by`);
    await seen.waitFor({ timeout: 1000 });
    expect(Date.now() - clickedAt).toBeLessThanOrEqual(1000);
    expect(await seen.textContent()).toContain('acknowledged by ops');
    await second.reload();
    await second.locator(`li.alert[data-alert="${id}"] .acked-by`).waitFor({ timeout: 10_000 });
  });

  it('a panic clip becomes playable in the page, verified, with the pre-roll plus post-roll, and is in the archive list', async () => {
    const page = await newPage();
    await logIn(page, 'ops');
    await page.getByRole('link', { name: /Alerts/ }).click();
    // The alerts raised by this press, found by their time: counting the list before the press races
    // the retained inbox that the page is still receiving.
    const pressedAt = Date.now();
    await press();
    const raised = async () => {
      const ids: (string | null)[] = [];
      for (const item of await page.locator('li.alert').all()) {
        const at = Date.parse((await item.locator('time').getAttribute('datetime')) ?? '');
        if (at >= pressedAt) ids.push(await item.getAttribute('data-alert'));
      }
      return ids;
    };
    await expect.poll(raised, { timeout: 5000 }).toHaveLength(1);
    const [id] = await raised();
    const clip = page.locator(`.clip[data-clip="hub/${id}"]`);
    // post-roll 1 s, then the GOP holding it (1 s), the mux, delivery to the hub and the page's check.
    await clip.locator('.verified').waitFor({ timeout: 20_000 });
    const duration = await page.evaluate<number>(
      `new Promise((resolve) => { const v = document.querySelector('.clip[data-clip="hub/${id}"] video');
         if (v.readyState >= 1) resolve(v.duration); else v.addEventListener('loadedmetadata', () => resolve(v.duration)); })`,
    );
    // pre 1 s + post 1 s; the clip starts at the keyframe at or before press − pre (1 s GOP).
    expect(duration).toBeGreaterThanOrEqual(1.9);
    expect(duration).toBeLessThanOrEqual(3.6);
    expect(await clip.getByRole('link', { name: /Download/ }).getAttribute('download')).toBe(`hub-${id}.mp4`);
    // The archive lists it for any console, including one opened later.
    const later = await newPage();
    await logIn(later, 'ops');
    await later.getByRole('link', { name: 'Clips' }).click();
    await later.locator('li.alert', { hasText: 'hub' }).first().waitFor({ timeout: 10_000 });
    const listed = await later.evaluate<string[]>(
      "fetch('/api/clips').then((r) => r.json()).then((b) => b.clips.map((c) => c.clipId))",
    );
    expect(listed).toContain(id);
  });

  it('staff see chat and the site-wide alerts only; console and staff chat with broker-stamped senders', async () => {
    const [operator, staff] = [await newPage(), await newPage({ width: 360, height: 740 })];
    await logIn(operator, 'ops');
    await logIn(staff, 'alice');
    await staff.getByRole('link', { name: /Chat/ }).waitFor();
    expect(await staff.getByRole('link', { name: 'Live' }).count()).toBe(0);
    expect(await staff.getByRole('link', { name: 'Devices' }).count()).toBe(0);
    // The server enforces it too: no video, no box health for staff.
    expect(
      await staff.evaluate(() =>
        fetch('/janus', { method: 'POST', body: '{"janus":"create"}' }).then((r) => r.status),
      ),
    ).toBe(403);
    expect(await staff.evaluate(() => fetch('/api/telemetry').then((r) => r.status))).toBe(403);
    // Staff see the panic (site audience) without an Acknowledge button.
    await staff.getByRole('link', { name: /Alerts/ }).click();
    await expect.poll(() => staff.locator('li.alert').count(), { timeout: 5000 }).toBeGreaterThan(0);
    expect(await staff.getByRole('button', { name: 'Acknowledge' }).count()).toBe(0);
    // Chat.
    await operator.getByRole('link', { name: /Chat/ }).click();
    await staff.getByRole('link', { name: /Chat/ }).click();
    const text = `gate 3 clear ${Date.now()}`;
    await operator.getByLabel('Message to #general').fill(text);
    await operator.getByRole('button', { name: 'Send' }).click();
    const received = staff.locator('.messages li', { hasText: text });
    await received.waitFor({ timeout: 5000 });
    expect(await received.locator('.from').textContent()).toContain('ops');
    const reply = `on my way ${Date.now()}`;
    await staff.getByLabel('Message to #general').fill(reply);
    await staff.getByRole('button', { name: 'Send' }).click();
    const back = operator.locator('.messages li', { hasText: reply });
    await back.waitFor({ timeout: 5000 });
    expect(await back.locator('.from').textContent()).toContain('alice');
  });

  it('a camera box killed shows offline at once, and online again after it restarts', async () => {
    const page = await newPage();
    await logIn(page, 'ops');
    await page.getByRole('link', { name: 'Devices' }).click();
    const box = page.locator('article.device[data-device="cam-a"] .status');
    await expect.poll(() => box.textContent(), { timeout: 10_000 }).toBe('online');
    await site.killBox();
    const killedAt = Date.now();
    // The hub publishes the box's last will when its connection drops; the uplink's keep-alive (30 s,
    // ×1.5 at the broker) bounds it when the network rather than the process dies.
    await expect.poll(() => box.textContent(), { timeout: 45_000 }).toBe('offline');
    expect(Date.now() - killedAt).toBeLessThan(45_000);
    await site.startBox();
    await expect.poll(() => box.textContent(), { timeout: 20_000 }).toBe('online');
  });

  it('a tile plays again by itself within 5 s of a Janus restart', async () => {
    const page = await newPage();
    await logIn(page, 'ops');
    await expect
      .poll(async () => (await framesOf(page))['hub/cam0'] ?? 0, { timeout: 20_000 })
      .toBeGreaterThan(5);
    await site.janus.restart();
    const back = Date.now();
    const frames = (await framesOf(page))['hub/cam0'] ?? 0;
    await expect
      .poll(async () => (await framesOf(page))['hub/cam0'] ?? 0, { timeout: 5000, interval: 100 })
      .toBeGreaterThan(frames + 5);
    expect(Date.now() - back).toBeLessThanOrEqual(5000);
  });

  it('on a 360×740 phone no page scrolls sideways, and axe finds no serious or critical problem', async () => {
    const page = await newPage({ width: 360, height: 740 });
    await page.goto(`${site.origin}/`);
    const check = async (what: string) => {
      const { overflow, violations } = await pageProblems(page);
      expect(overflow, `${what} scrolls sideways`).toBeLessThanOrEqual(0);
      expect(violations, what).toEqual([]);
    };
    await page.getByLabel('User name').waitFor();
    await check('login');
    await logIn(page, 'ops');
    for (const name of ['Live', 'Alerts', 'Clips', 'Chat', 'Devices']) {
      await page.getByRole('link', { name: new RegExp(`^${name}`) }).click();
      await page.waitForTimeout(500);
      await check(name);
    }
  });

  it('a revoked account is logged out at the identities reload', async () => {
    const page = await newPage();
    await logIn(page, 'alice');
    await page.getByRole('link', { name: /Chat/ }).waitFor();
    const cookie = (await page.context().cookies()).find((c) => c.name === 'outpost_session');
    const header = { cookie: `outpost_session=${cookie?.value ?? ''}` };
    expect((await hubRequest(`${site.origin}/api/session`, { headers: header })).status).toBe(200);
    await site.revoke('alice');
    expect((await hubRequest(`${site.origin}/api/session`, { headers: header })).status).toBe(401);
    await page.getByLabel('User name').waitFor({ timeout: 10_000 });
  });

  it('every request the pages made went to the hub', () => {
    expect(requested.length).toBeGreaterThan(20);
    const host = new URL(site.origin).host;
    const elsewhere = requested.filter(
      (url) => !url.startsWith('blob:') && !url.startsWith('data:') && new URL(url).host !== host,
    );
    expect(elsewhere).toEqual([]);
  });
});
