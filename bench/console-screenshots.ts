// The screenshots in docs/console.md, taken from the running pages (not drawn by hand): a site from
// test/support/console-site.ts (Janus, a hub with two cameras and a fake-pin button, a camera box),
// a panic pressed and acknowledged, a chat exchanged, then each page at desktop and phone width.
// `npm run docs:screenshots` writes docs/console-*.png.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { headlessBrowser } from '../test/support/chromium.js';
import { ACCOUNTS, startConsoleSite } from '../test/support/console-site.js';

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const site = await startConsoleSite({ hubCameras: 2, boxCameras: 1 });
const browser = await headlessBrowser([site.spki]);
try {
  const open = async (
    user: keyof typeof ACCOUNTS,
    viewport: { width: number; height: number },
  ): Promise<Page> => {
    const page = await (await browser.newContext({ viewport, deviceScaleFactor: 1 })).newPage();
    await page.goto(`${site.origin}/`);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(ACCOUNTS[user].password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /Chat/ }).waitFor();
    return page;
  };
  const shot = async (page: Page, name: string) => {
    await page.screenshot({ path: join(DOCS, `console-${name}.png`) });
    console.log(`docs/console-${name}.png`);
  };

  const login = await (await browser.newContext({ viewport: { width: 1100, height: 640 } })).newPage();
  await login.goto(`${site.origin}/`);
  await login.getByLabel('User name').waitFor();
  await shot(login, 'login');

  const ops = await open('ops', { width: 1280, height: 720 });
  // Polled from here: waitForFunction would evaluate a string in the page, which its CSP forbids.
  for (let i = 0; i < 600; i++) {
    const playing = await ops.evaluate<number>(
      `[...document.querySelectorAll('figure.tile video')].filter((v) => v.getVideoPlaybackQuality().totalVideoFrames > 10).length`,
    );
    if (playing >= 3) break;
    await sleep(100);
  }
  await sleep(1500);
  await shot(ops, 'live');

  // A panic: the alert, its clip arriving and verified; a second one left open (the banner).
  site.pin.set(0);
  await sleep(100);
  site.pin.set(1);
  await ops.getByRole('link', { name: /Alerts/ }).click();
  await ops.locator('.clip .verified').first().waitFor({ timeout: 30_000 });
  await ops.locator('li.alert').first().getByRole('button', { name: 'Acknowledge' }).click();
  await ops.locator('li.alert .acked-by').first().waitFor();
  site.pin.set(0);
  await sleep(100);
  site.pin.set(1);
  await ops.locator('li.alert.urgent').first().waitFor();
  await sleep(1000);
  await shot(ops, 'alerts');

  const alice = await open('alice', { width: 360, height: 740 });
  await alice.getByRole('link', { name: /Chat/ }).click();
  await ops.getByRole('link', { name: /Chat/ }).click();
  await ops.getByLabel('Message to #general').fill('Panic at the hub gate: who is nearest?');
  await ops.getByRole('button', { name: 'Send' }).click();
  await alice.locator('.messages li', { hasText: 'who is nearest' }).waitFor();
  await alice.getByLabel('Message to #general').fill('Alice here, at the gate in 2 minutes.');
  await alice.getByRole('button', { name: 'Send' }).click();
  await ops.locator('.messages li', { hasText: 'Alice here' }).waitFor();
  await sleep(500);
  await shot(alice, 'chat-phone');

  await ops.getByRole('link', { name: 'Devices' }).click();
  await ops.locator('article.device[data-device="cam-a"] dl.telemetry').waitFor({ timeout: 30_000 });
  await sleep(500);
  await shot(ops, 'devices');
} finally {
  await browser.close();
  await site.stop();
}
