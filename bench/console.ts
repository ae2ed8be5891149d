// bench:console: the site console measured in a real browser (Debian's Chromium) against a real site
// (bench/console-site.ts: Janus, the hub daemon with a fake-pin button, a camera box; 4 cameras):
//   - fake-pin press → the alert visible in the page, N presses (default 50);
//   - press → the clip playable and verified (sha256 checked in the page);
//   - page open → first decoded frame on every tile (4 cameras), M opens (default 10);
//   - glass-to-glass in a console tile (stamped camera) beside bench:latency's viewer page playing the
//     same mountpoint straight from Janus, in the same run (ABAB phases);
//   - page weight (gzip, all assets) and the hub's RSS with 5 consoles open against none.
// Prints a table; the last line is one line of JSON.
import { fork, type ChildProcess } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { headlessBrowser } from '../test/support/chromium.js';
import { ACCOUNTS } from '../test/support/console-site.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const PRESSES = arg('presses', 50);
const OPENS = arg('opens', 10);
const FRAMES = arg('frames', 300);
const POST_ROLL_S = 1;
const STAMPED_MOUNTPOINT = 1000; // the hub's cam0 (sfu.janus.mountpointIdBase + 0)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}
const round = (value: number, digits = 0) => Math.round(value * 10 ** digits) / 10 ** digits;
const summary = (values: number[]) => ({
  n: values.length,
  p50: round(percentile(values, 50)),
  p95: round(percentile(values, 95)),
  max: round(Math.max(...values)),
});

// ------------------------------------------------------------------ the site in its own process
interface Ready {
  origin: string;
  spki: string;
  janus: string;
  pid: number;
}
const child: ChildProcess = fork(join(REPO, 'dist/bench/console-site.js'), [], {
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const waiting: Array<(message: Record<string, unknown>) => void> = [];
child.on('message', (message: Record<string, unknown>) => waiting.shift()?.(message));
const next = () => new Promise<Record<string, unknown>>((resolve) => waiting.push(resolve));
const ready = (await next()) as unknown as Ready;
const press = async (): Promise<number> => {
  const reply = next();
  child.send({ type: 'press' });
  return (await reply).at as number;
};
async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}
async function steadyRss(pid: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(await rssMb(pid));
    await sleep(1000);
  }
  return percentile(samples, 50);
}

const browser: Browser = await headlessBrowser([ready.spki]);
const login = await browser.newContext();
{
  const page = await login.newPage();
  await page.goto(`${ready.origin}/`);
  await page.getByLabel('User name').fill('ops');
  await page.getByLabel('Password').fill(ACCOUNTS.ops.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('link', { name: 'Live' }).waitFor();
  await page.close();
}
const storageState = await login.storageState();
const consoleContext = (viewport = { width: 1280, height: 900 }) =>
  browser.newContext({ storageState, viewport });

/** Resolves with the page time (ms since it opened) when `count` tiles had their first frame. */
function tilesPlaying(page: Page, count: number): Promise<number> {
  // Browser-side code as strings: this project has Node's types, not the DOM's.
  return page.evaluate<number>(`new Promise((resolve) => {
    const check = () => {
      const tiles = window.outpostConsole?.tiles;
      const firsts = tiles ? [...tiles.values()].map((t) => t.firstFrameAt).filter((t) => t !== undefined) : [];
      if (firsts.length >= ${count}) resolve(Math.max(...firsts));
      else setTimeout(check, 20);
    };
    check();
  })`);
}

try {
  // ---------------------------------------------------------------- warm-up: every camera streaming
  {
    const context = await consoleContext();
    const page = await context.newPage();
    await page.goto(`${ready.origin}/#/live`);
    await Promise.race([
      tilesPlaying(page, 4),
      sleep(60_000).then(() => {
        throw new Error('4 tiles did not play within 60 s');
      }),
    ]);
    await context.close();
  }

  // ---------------------------------------------------------------- page open → every tile's first frame
  const firstFrames: number[] = [];
  for (let i = 0; i < OPENS; i++) {
    const context = await consoleContext();
    const page = await context.newPage();
    await page.goto(`${ready.origin}/#/live`);
    firstFrames.push(await tilesPlaying(page, 4));
    await context.close();
    await sleep(500);
  }

  // ---------------------------------------------------------------- presses → alert, → verified clip
  const context = await consoleContext();
  const page = await context.newPage();
  await page.goto(`${ready.origin}/#/alerts`);
  await page.locator('h1#alerts-title').waitFor();
  await page.evaluate(`(() => {
    const seen = { alerts: [], clips: new Map() };
    window.benchSeen = seen;
    const known = new Set([...document.querySelectorAll('li.alert[data-alert]')].map((item) => item.getAttribute('data-alert')));
    new MutationObserver(() => {
      const now = Date.now();
      for (const item of document.querySelectorAll('li.alert[data-alert]')) {
        const id = item.getAttribute('data-alert');
        if (!known.has(id)) {
          known.add(id);
          seen.alerts.push([id, now]);
        }
      }
      for (const verified of document.querySelectorAll('.clip[data-clip] .verified')) {
        const id = verified.closest('.clip').getAttribute('data-clip');
        if (!seen.clips.has(id)) seen.clips.set(id, now);
      }
    }).observe(document.body, { childList: true, subtree: true });
  })()`);
  const pressedAt: number[] = [];
  for (let i = 0; i < PRESSES; i++) {
    pressedAt.push(await press());
    await sleep(600);
  }
  await sleep((POST_ROLL_S + 12) * 1000);
  const seen = await page.evaluate<{ alerts: Array<[string, number]>; clips: Array<[string, number]> }>(
    '({ alerts: window.benchSeen.alerts, clips: [...window.benchSeen.clips.entries()] })',
  );
  const clipAt = new Map(seen.clips);
  const alertMs: number[] = [];
  const clipMs: number[] = [];
  seen.alerts.slice(0, PRESSES).forEach(([id, at], i) => {
    const pressed = pressedAt[i] ?? NaN;
    alertMs.push(at - pressed);
    const clip = clipAt.get(`hub/${id}`);
    if (clip !== undefined) clipMs.push(clip - pressed);
  });
  await context.close();

  // ---------------------------------------------------------------- glass-to-glass: console tile vs viewer page
  const stampSource = (await readFile(join(REPO, 'dist/daemon/src/camera/stamp.js'), 'utf8')).replace(
    /^export /gm,
    '',
  );
  const measure = async (page: Page, selector: string, frames: number): Promise<number[]> => {
    await page.evaluate(
      `(() => {\n${stampSource}\n; window.benchStamp = { readStamp, STAMP_WIDTH, STAMP_HEIGHT }; })()`,
    );
    return page.evaluate<number[]>(`new Promise((resolve) => {
      const { readStamp, STAMP_WIDTH: w, STAMP_HEIGHT: h } = window.benchStamp;
      const video = document.querySelector(${JSON.stringify(selector)});
      const canvas = document.createElement('canvas');
      canvas.width = w;
      canvas.height = h;
      const context = canvas.getContext('2d', { willReadFrequently: true });
      const out = [];
      let skipped = 0;
      const onFrame = () => {
        const at = Date.now();
        context.drawImage(video, 0, 0, w, h, 0, 0, w, h);
        const stamp = readStamp({ data: context.getImageData(0, 0, w, h).data, width: w, height: h, format: 'RGBA' });
        // The first 30 stamped frames are warm-up, as in bench:latency.
        if (stamp && skipped++ >= 30) out.push(at - stamp.timeMs);
        if (out.length >= ${frames}) resolve(out);
        else video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    })`);
  };
  const viewerServer = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    const files: Record<string, [string, string]> = {
      '/viewer.html': [join(REPO, 'bench/latency/viewer.html'), 'text/html'],
      '/viewer.js': [join(REPO, 'bench/latency/viewer.js'), 'text/javascript'],
      '/stamp.js': [join(REPO, 'dist/daemon/src/camera/stamp.js'), 'text/javascript'],
    };
    const file = files[path];
    if (!file) return void response.writeHead(404).end();
    void readFile(file[0]).then((body) => response.writeHead(200, { 'content-type': file[1] }).end(body));
  });
  await new Promise<void>((resolve) => viewerServer.listen(0, '127.0.0.1', resolve));
  const viewerPort = (viewerServer.address() as { port: number }).port;
  const tileLatency: number[] = [];
  const viewerLatency: number[] = [];
  const phase = async (kind: 'console' | 'viewer') => {
    const ctx: BrowserContext = kind === 'console' ? await consoleContext() : await browser.newContext();
    const page = await ctx.newPage();
    if (kind === 'console') {
      await page.goto(`${ready.origin}/#/live`);
      await tilesPlaying(page, 1);
      tileLatency.push(...(await measure(page, 'figure.tile[data-camera="hub/cam0"] video', FRAMES / 2)));
    } else {
      await page.goto(
        `http://127.0.0.1:${viewerPort}/viewer.html?janus=${encodeURIComponent(ready.janus)}&play=${STAMPED_MOUNTPOINT}`,
      );
      await page.locator('video').first().waitFor();
      viewerLatency.push(...(await measure(page, 'video', FRAMES / 2)));
    }
    await ctx.close();
  };
  await phase('console');
  await phase('viewer');
  await phase('console');
  await phase('viewer');
  viewerServer.close();

  // ---------------------------------------------------------------- page weight
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) await walk(join(dir, entry.name));
      else files.push(join(dir, entry.name));
    }
  };
  await walk(join(REPO, 'dist/console'));
  let gzipBytes = 0;
  for (const file of files) gzipBytes += gzipSync(await readFile(file), { level: 9 }).length;

  // ---------------------------------------------------------------- hub RSS: none vs 5 consoles
  await sleep(3000);
  const rssNone = await steadyRss(ready.pid);
  const open: BrowserContext[] = [];
  for (let i = 0; i < 5; i++) {
    const ctx = await consoleContext();
    const page = await ctx.newPage();
    await page.goto(`${ready.origin}/#/live`);
    await tilesPlaying(page, 4);
    open.push(ctx);
  }
  await sleep(10_000);
  const rssFive = await steadyRss(ready.pid);
  for (const ctx of open) await ctx.close();

  const g2g = { console: summary(tileLatency), viewer: summary(viewerLatency) };
  const result = {
    bench: 'console',
    pressToAlertMs: summary(alertMs),
    pressToVerifiedClipMs: { ...summary(clipMs), of: PRESSES },
    pageOpenToFirstFrameEveryTileMs: { ...summary(firstFrames), tiles: 4 },
    glassToGlassMs: { ...g2g, ratioP95: round(g2g.console.p95 / g2g.viewer.p95, 2) },
    pageWeightGzipKB: round(gzipBytes / 1024, 1),
    hubRssMb: {
      none: round(rssNone, 1),
      fiveConsoles: round(rssFive, 1),
      delta: round(rssFive - rssNone, 1),
    },
  };
  const targets = [
    ['fake-pin press → alert visible (p95)', `${result.pressToAlertMs.p95} ms`, '≤ 100 ms'],
    [
      'press → clip playable and verified (p95)',
      `${result.pressToVerifiedClipMs.p95} ms (${clipMs.length}/${PRESSES})`,
      `≤ ${(POST_ROLL_S + 3) * 1000} ms`,
    ],
    [
      'page open → first frame, every tile (p95)',
      `${result.pageOpenToFirstFrameEveryTileMs.p95} ms`,
      '≤ 1000 ms',
    ],
    [
      'glass-to-glass, console tile / viewer (p95)',
      `${g2g.console.p95} / ${g2g.viewer.p95} ms = ${result.glassToGlassMs.ratioP95}`,
      '≤ 1.1',
    ],
    ['page weight, gzip', `${result.pageWeightGzipKB} KB`, '≤ 250 KB'],
    [
      'hub RSS, 5 consoles − none',
      `${result.hubRssMb.delta} MB (${result.hubRssMb.none} → ${result.hubRssMb.fiveConsoles})`,
      '≤ 15 MB',
    ],
  ];
  console.log('');
  for (const [what, value, target] of targets)
    console.log(`${what!.padEnd(46)} ${value!.padEnd(36)} ${target}`);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  child.send({ type: 'stop' });
  await new Promise((resolve) => child.once('exit', resolve));
}
