// rtp.rtcp: the camera sends RTCP sender reports (rtpbin's session) to rtp.port + 1, with the camera's
// SSRC, beside the RTP it always sent; with SRTP they leave as SRTCP. Without SRTP the session also
// hears the SFU's RTCP on the socket its reports leave from, so a keyframe request (PLI) sent back to
// that address brings an IDR frame at once instead of at the next keyframe interval.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Camera } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { ssrcFor } from '../../daemon/src/camera/pipeline.js';
import { configSchema, SRTP_SUITES } from '../../daemon/src/config/schema.js';
import { freeUdpPortPair, until } from '../support/processes.js';
import { startsIdr } from '../support/rtp.js';

const log = pino({ level: 'silent' });
const fast = { stallMs: 3000, backoffMinMs: 200, backoffMaxMs: 1000, exitGraceMs: 1000 };
const encoders = new Encoders(log);
beforeAll(() => encoders.start());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Listener {
  packets: Buffer[];
  /** Arrival time (ms, performance.now) of each packet, same index as `packets`. */
  at: number[];
  /** The address the first packet came from: where an SFU sends its RTCP back (Janus latches on it). */
  from: { address: string; port: number } | undefined;
  socket: Socket;
}

async function listen(port: number): Promise<Listener> {
  const socket: Socket = createSocket('udp4');
  const seen: Listener = { packets: [], at: [], from: undefined, socket };
  socket.on('message', (packet, remote) => {
    seen.packets.push(packet);
    seen.at.push(performance.now());
    seen.from ??= { address: remote.address, port: remote.port };
  });
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(resolve)));
  return seen;
}

async function startCamera(
  port: number,
  sfu: Record<string, unknown> = {},
  camera: Record<string, unknown> = {},
): Promise<Camera> {
  const config = configSchema.parse({
    sfu,
    cameras: [{ name: 'gate', width: 320, height: 240, ...camera, rtp: { port, rtcp: true } }],
  });
  const started = new Camera({ camera: config.cameras[0]!, sfu: config.sfu, encoders, log, timings: fast });
  cleanups.push(() => started.stop());
  await started.start();
  return started;
}

/**
 * When each keyframe began, by RTP timestamp: the arrival time of its first packet holding an IDR
 * slice (NAL type 5) whole, in a STAP-A (24) or as the start of an FU-A (28, RFC 6184 §5.8). x264's
 * sliced threads cut one frame into several slices, so frames are told apart by timestamp.
 */
function keyframes(rtp: Listener): Map<number, number> {
  const found = new Map<number, number>();
  rtp.packets.forEach((packet, index) => {
    if (packet.length < 14 || !startsIdr(packet)) return;
    const timestamp = packet.readUInt32BE(4);
    if (!found.has(timestamp)) found.set(timestamp, rtp.at[index]!);
  });
  return found;
}

/** RTCP PLI (RFC 4585 §6.3.1): V=2, FMT=1, PT=206 (PSFB), length 2, sender SSRC, media SSRC. */
function pli(mediaSsrc: number): Buffer {
  const packet = Buffer.alloc(12);
  packet[0] = 0x81;
  packet[1] = 206;
  packet.writeUInt16BE(2, 2);
  packet.writeUInt32BE(1, 4);
  packet.writeUInt32BE(mediaSsrc, 8);
  return packet;
}

/**
 * `udpsrc ! srtpdec ! udpsink`: decrypts the camera's SRTP (AES_CM_128_HMAC_SHA1_80) from `port` and
 * sends the plain RTP on to `to`, where keyframes can be told apart again.
 */
async function srtpDecryptor(port: number, to: number, key: Buffer, ssrc: number): Promise<void> {
  const { cipher, auth } = SRTP_SUITES.AES_CM_128_HMAC_SHA1_80;
  const caps =
    `application/x-srtp,media=video,clock-rate=90000,encoding-name=H264,payload=96,ssrc=(uint)${ssrc},` +
    `srtp-key=(buffer)${key.toString('hex')},srtp-cipher=(string)${cipher},srtp-auth=(string)${auth},` +
    `srtcp-cipher=(string)${cipher},srtcp-auth=(string)${auth}`;
  const child = spawn(
    'gst-launch-1.0',
    [
      '-q',
      'udpsrc',
      `port=${port}`,
      'address=127.0.0.1',
      `caps=${caps}`,
      '!',
      'srtpdec',
      '!',
      'udpsink',
      'host=127.0.0.1',
      `port=${to}`,
      'sync=false',
    ],
    { stdio: 'ignore' },
  );
  cleanups.push(async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  });
  await sleep(300); // udpsrc binds as the pipeline starts; the camera's first packets may come before
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** RTCP SR (RFC 3550 §6.4.1): version 2, packet type 200, sender SSRC at bytes 4–7. */
function senderReports(packets: Buffer[]): Buffer[] {
  return packets.filter((p) => p.length >= 28 && p[0]! >> 6 === 2 && p[1] === 200);
}

describe('RTCP sender reports (rtp.rtcp)', () => {
  it('sender reports with the camera SSRC arrive on rtp.port + 1, and RTP keeps flowing', async () => {
    const port = await freeUdpPortPair();
    const rtp = await listen(port);
    const rtcp = await listen(port + 1);
    const camera = await startCamera(port);
    await until(() => senderReports(rtcp.packets).length >= 1, 10_000, 'a sender report');
    const report = senderReports(rtcp.packets)[0]!;
    expect(report.readUInt32BE(4)).toBe(ssrcFor('gate'));
    // The sender's packet count (bytes 20–23) counts the RTP that went out.
    expect(report.readUInt32BE(20)).toBeGreaterThan(0);
    expect(rtp.packets.filter((p) => (p[1]! & 0x7f) === 96).length).toBeGreaterThan(30);
    // The supervisor counts packets from the payloader, which now feeds rtpbin.
    await until(() => camera.status().state === 'streaming', 5000, 'the camera to report streaming');
  });

  it('with SRTP the reports are SRTCP: header in clear, E flag set, 80-bit tag', async () => {
    const port = await freeUdpPortPair();
    const rtp = await listen(port);
    const rtcp = await listen(port + 1);
    await startCamera(port, { srtp: { key: randomBytes(30).toString('base64') } });
    await until(() => senderReports(rtcp.packets).length >= 1, 10_000, 'a sender report');
    const report = senderReports(rtcp.packets)[0]!;
    expect(report.readUInt32BE(4)).toBe(ssrcFor('gate'));
    // RFC 3711 §3.4: … | E + 31-bit SRTCP index | 10-byte authentication tag.
    expect(report.readUInt32BE(report.length - 14) >>> 31).toBe(1);
    expect(rtp.packets.length).toBeGreaterThan(30);
  });

  it.each(['x264enc', 'openh264enc'])(
    '%s: a PLI sent back to where the reports come from brings a keyframe at once; nothing else does',
    async (encoder) => {
      const port = await freeUdpPortPair();
      const rtp = await listen(port);
      const rtcp = await listen(port + 1);
      // A keyframe every 10 s: the first comes at the start, the next only on request.
      const camera = await startCamera(port, {}, { keyframeIntervalSeconds: 10, encoder });
      await until(() => senderReports(rtcp.packets).length >= 1, 10_000, 'a sender report');
      await until(() => keyframes(rtp).size >= 1, 5000, 'the first keyframe');
      const sfu = rtcp.from!;
      const send = (packet: Buffer): Promise<void> =>
        new Promise((resolve, reject) =>
          rtcp.socket.send(packet, sfu.port, sfu.address, (error) => (error ? reject(error) : resolve())),
        );

      // Control: a PLI for another SSRC, then a quiet second: no keyframe.
      // A restarted worker would start with a keyframe of its own and a new RTCP socket: say so.
      const firstAt = [...keyframes(rtp).values()][0]!;
      const why = (): string => {
        const { state, restarts, lastError } = camera.status();
        const times = [...keyframes(rtp).values()].map((at) => Math.round(at - firstAt));
        return `keyframes at ${times.join(', ')} ms; camera ${JSON.stringify({ state, restarts, lastError })}`;
      };
      const before = keyframes(rtp).size;
      await send(pli((ssrcFor('gate') + 1) >>> 0));
      await sleep(1000);
      expect(keyframes(rtp).size, why()).toBe(before);

      // A PLI for the camera's SSRC, from the SFU's RTCP port to the address the reports come from.
      const sentAt = performance.now();
      await send(pli(ssrcFor('gate')));
      await until(() => keyframes(rtp).size > before, 2000, 'a keyframe after the PLI').catch(
        (error: Error) => {
          throw new Error(`${error.message}: ${why()}`);
        },
      );
      const after = [...keyframes(rtp).values()].find((at) => at >= sentAt)!;
      const latencyMs = after - sentAt;
      process.stdout.write(
        `${encoder}: PLI → first IDR packet ${latencyMs.toFixed(1)} ms (keyframe interval 10 s)\n`,
      );
      expect(latencyMs, why()).toBeLessThan(500);
      expect(camera.status().restarts, why()).toBe(0);
    },
  );

  it('with SRTP the worker relays RTCP: a plain PLI from the SFU (as Janus sends it) brings a keyframe', async () => {
    const key = randomBytes(30);
    const port = await freeUdpPortPair();
    const plainPort = await freeUdpPortPair();
    const rtp = await listen(plainPort);
    const rtcp = await listen(port + 1);
    await srtpDecryptor(port, plainPort, key, ssrcFor('gate'));
    const camera = await startCamera(
      port,
      { srtp: { key: key.toString('base64') } },
      { keyframeIntervalSeconds: 10 },
    );
    await until(() => senderReports(rtcp.packets).length >= 1, 10_000, 'a sender report');
    await until(() => keyframes(rtp).size >= 1, 5000, 'the first keyframe, decrypted');
    // Still SRTCP (E flag), and it comes from the relay's socket, which is where the SFU answers.
    const report = senderReports(rtcp.packets)[0]!;
    expect(report.readUInt32BE(report.length - 14) >>> 31).toBe(1);
    const sfu = rtcp.from!;
    const send = (packet: Buffer, from: Socket = rtcp.socket): Promise<void> =>
      new Promise((resolve, reject) =>
        from.send(packet, sfu.port, sfu.address, (error) => (error ? reject(error) : resolve())),
      );

    // Control: the camera's own SSRC, but not from the SFU's RTCP port: the relay drops it.
    const stranger = createSocket('udp4');
    await new Promise<void>((resolve) => stranger.bind(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => stranger.close(resolve)));
    const before = keyframes(rtp).size;
    await send(pli(ssrcFor('gate')), stranger);
    await sleep(1000);
    expect(keyframes(rtp).size).toBe(before);

    const sentAt = performance.now();
    await send(pli(ssrcFor('gate')));
    await until(() => keyframes(rtp).size > before, 2000, 'a keyframe after the PLI');
    const latencyMs = [...keyframes(rtp).values()].find((at) => at >= sentAt)! - sentAt;
    process.stdout.write(
      `SRTP: PLI → first IDR packet ${latencyMs.toFixed(1)} ms (keyframe interval 10 s)\n`,
    );
    expect(latencyMs).toBeLessThan(500);
    expect(camera.status().restarts).toBe(0);
  });

  it('config: RTCP on rtp.port + 1 must not land on another camera', () => {
    const result = configSchema.safeParse({
      cameras: [
        { name: 'a', rtp: { port: 5004, rtcp: true } },
        { name: 'b', rtp: { port: 5005 } },
      ],
    });
    expect(result.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'cameras.0.rtp.port: with rtp.rtcp, RTCP goes to rtp.port + 1 = 5005, already used by cameras[1]; space RTP ports 2 apart',
    ]);
  });
});
