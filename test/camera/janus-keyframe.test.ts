// A viewer joining a Janus mountpoint gets a fresh keyframe from the camera at once: Janus 1.1.2's
// streaming plugin latches onto the address the camera's RTCP comes from (rtcpport) and sends a PLI
// there when a viewer's WebRTC media comes up (janus_streaming_setup_media) or when a viewer asks for
// one; the camera's RTCP session answers with an IDR. Real Janus, real headless Chromium (the
// bench:latency viewer page), and a transparent UDP relay between camera and Janus that only watches:
// it counts keyframes on the way to Janus and sees Janus's PLI on the way back.
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import type { BrowserContext, Page } from 'playwright-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { configSchema, mountpointIdFor } from '../../daemon/src/config/schema.js';
import { cameraOnJanus } from '../support/cameras.js';
import { headlessChromium } from '../support/chromium.js';
import { janusServer } from '../support/janus.js';
import { freeUdpPortPair, REPO, requireBuilt, tempDir, until } from '../support/processes.js';
import { startsIdr } from '../support/rtp.js';

const log = pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
const PAGES = join(REPO, 'bench/latency');

const encoders = new Encoders(log);
beforeAll(async () => {
  requireBuilt(); // the viewer page imports the compiled stamp codec
  await encoders.start();
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function bind(port: number): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(resolve)));
  return socket;
}

interface Relay {
  /** performance.now() of the first packet of each keyframe (by RTP timestamp), in order. */
  keyframes: number[];
  /** performance.now() of each PLI or FIR Janus sent towards the camera. */
  keyframeRequests: number[];
  reportsToJanus: number;
}

/**
 * camera → [rtpPort, rtpPort + 1] → Janus [janusPort, janusPort + 1], and Janus's RTCP back to the
 * address the camera's RTCP came from. Janus latches onto the relay's RTCP socket, as it would onto
 * the camera's.
 */
async function relay(rtpPort: number, janusPort: number, srtp: boolean): Promise<Relay> {
  const seen: Relay = { keyframes: [], keyframeRequests: [], reportsToJanus: 0 };
  const timestamps = new Set<number>();
  const rtp = await bind(rtpPort);
  rtp.on('message', (packet) => {
    // SRTP payloads are ciphertext: keyframes are then counted by the viewer instead.
    if (!srtp && packet.length > 14 && startsIdr(packet) && !timestamps.has(packet.readUInt32BE(4))) {
      timestamps.add(packet.readUInt32BE(4));
      seen.keyframes.push(performance.now());
    }
    rtp.send(packet, janusPort, '127.0.0.1');
  });
  const rtcp = await bind(rtpPort + 1);
  let camera: { address: string; port: number } | undefined;
  rtcp.on('message', (packet, from) => {
    if (from.port === janusPort + 1) {
      // RFC 4585 §6.1: PT 206 (PSFB) with FMT 1 is a PLI, FMT 4 a FIR.
      const fmt = packet[0]! & 0x1f;
      if (packet[1] === 206 && (fmt === 1 || fmt === 4)) seen.keyframeRequests.push(performance.now());
      if (camera) rtcp.send(packet, camera.port, camera.address);
      return;
    }
    camera = { address: from.address, port: from.port };
    seen.reportsToJanus += 1;
    rtcp.send(packet, janusPort + 1, '127.0.0.1');
  });
  return seen;
}

/** Serves the bench:latency viewer (viewer.html, viewer.js and the compiled stamp.js) on loopback. */
async function viewerPages(): Promise<string> {
  const files: Record<string, [string, string]> = {
    '/viewer.html': [join(PAGES, 'viewer.html'), 'text/html'],
    '/viewer.js': [join(PAGES, 'viewer.js'), 'text/javascript'],
    '/stamp.js': [join(REPO, 'dist/daemon/src/camera/stamp.js'), 'text/javascript'],
  };
  const server = createServer((request, response) => {
    const file = files[new URL(request.url ?? '/', 'http://x').pathname];
    if (!file) return void response.writeHead(404).end();
    readFile(file[0]).then(
      (body) => response.writeHead(200, { 'content-type': file[1] }).end(body),
      () => response.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        // Chromium keeps its connections alive; close() alone would wait for them.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

async function browser(): Promise<BrowserContext> {
  const context = await headlessChromium(join(await tempDir('outpost-chromium-'), 'profile'));
  cleanups.push(() => context.close());
  return context;
}

/** Keyframes the viewer's decoder has seen on mountpoint `id` (WebRTC inbound-rtp statistics). */
async function keyFramesDecoded(page: Page, id: number): Promise<number> {
  return page.evaluate(async (mountpoint) => {
    const viewer = (
      globalThis as unknown as {
        outpostViewer?: { inbound(id: number): Promise<{ keyFramesDecoded?: number } | undefined> };
      }
    ).outpostViewer;
    return (await viewer?.inbound(mountpoint))?.keyFramesDecoded ?? 0;
  }, id);
}

describe('keyframe requests through Janus (rtp.rtcp)', () => {
  it.each([
    { srtp: false, what: 'plain RTP' },
    { srtp: true, what: 'SRTP' },
  ])(
    '$what: a viewer joining makes Janus ask the camera for a keyframe, and it comes at once',
    async ({ srtp }) => {
      const janus = await janusServer();
      cleanups.push(() => janus.stop());
      const rtpPort = await freeUdpPortPair();
      const janusPort = await freeUdpPortPair();
      const seen = await relay(rtpPort, janusPort, srtp);
      const key = randomBytes(30).toString('base64');
      // Start the browser first: it is the slow part, and the camera's 10 s keyframe interval runs from
      // the camera's start.
      const page = await (await browser()).newPage();
      const pages = await viewerPages();

      const configFor = (port: number) =>
        configSchema.parse({
          site: 'test',
          device: 'box1',
          sfu: {
            mode: 'janus',
            janus: { url: janus.url, mountpointIdBase: 4300 },
            ...(srtp ? { srtp: { key } } : {}),
          },
          cameras: [
            { name: 'gate', width: 320, height: 240, keyframeIntervalSeconds: 10, rtp: { port, rtcp: true } },
          ],
        });
      // Janus's mountpoint listens where the relay sends; the camera sends to the relay.
      const { camera, mountpoints } = cameraOnJanus({
        janus: configFor(janusPort),
        camera: configFor(rtpPort),
        encoders,
        log,
        cleanups,
      });
      await mountpoints.start();
      const cameraStartedAt = performance.now();
      await camera.start();
      await until(() => camera.status().mountpoint?.state === 'present', 10_000, 'the mountpoint');
      await until(
        () => (srtp || seen.keyframes.length >= 1) && seen.reportsToJanus >= 1,
        10_000,
        'a keyframe and a report',
      );
      expect(seen.keyframeRequests).toEqual([]);

      const id = mountpointIdFor(configFor(janusPort), 0);
      const joined = performance.now();
      await page.goto(`${pages}/viewer.html?janus=${encodeURIComponent(janus.url)}&play=${id}`);
      await until(() => seen.keyframeRequests.length >= 1, 15_000, 'a keyframe request from Janus');
      const requestAt = seen.keyframeRequests[0]!;
      if (srtp) {
        // Janus's buffered keyframe first, then the one the camera sent on request.
        const deadline = performance.now() + 3000;
        while ((await keyFramesDecoded(page, id)) < 2) {
          if (performance.now() > deadline)
            throw new Error('the viewer decoded no second keyframe within 3 s');
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const decodedAt = performance.now();
        process.stdout.write(
          `SRTP: viewer joined → Janus PLI ${(requestAt - joined).toFixed(0)} ms → second keyframe decoded ` +
            `${(decodedAt - requestAt).toFixed(0)} ms later (polled every 50 ms); keyframe interval 10 s\n`,
        );
        // Not the interval's keyframe: that one comes 10 s after the camera's first frame.
        expect(decodedAt - cameraStartedAt).toBeLessThan(9000);
        return;
      }
      await until(
        () => seen.keyframes.some((at) => at > requestAt),
        2000,
        'a keyframe after Janus asked for one',
      );
      const answeredAt = seen.keyframes.find((at) => at > requestAt)!;
      const firstKeyframe = seen.keyframes[0]!;
      await page.waitForFunction(
        () => {
          const page = globalThis as unknown as {
            document: { querySelector(s: string): { videoWidth: number } | null };
          };
          return (page.document.querySelector('video')?.videoWidth ?? 0) > 0;
        },
        undefined,
        { timeout: 10_000 },
      );
      const pictureAt = performance.now();
      process.stdout.write(
        `viewer joined → Janus PLI ${(requestAt - joined).toFixed(0)} ms → camera IDR ` +
          `${(answeredAt - requestAt).toFixed(1)} ms; first picture ${(pictureAt - joined).toFixed(0)} ms ` +
          `after joining; keyframe interval 10 s\n`,
      );
      // The camera answered the request, not its interval: well inside 10 s of its first keyframe.
      expect(answeredAt - requestAt).toBeLessThan(500);
      expect(answeredAt - firstKeyframe).toBeLessThan(9000);
    },
  );
});
