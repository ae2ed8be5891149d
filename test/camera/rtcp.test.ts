// rtp.rtcp: the camera sends RTCP sender reports (rtpbin's session) to rtp.port + 1, with the camera's
// SSRC, beside the RTP it always sent; with SRTP they leave as SRTCP.
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Camera } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { ssrcFor } from '../../daemon/src/camera/pipeline.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { freeUdpPortPair, until } from '../support/processes.js';

const log = pino({ level: 'silent' });
const fast = { stallMs: 3000, backoffMinMs: 200, backoffMaxMs: 1000, exitGraceMs: 1000 };
const encoders = new Encoders(log);
beforeAll(() => encoders.start());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(port: number): Promise<{ packets: Buffer[] }> {
  const socket: Socket = createSocket('udp4');
  const seen = { packets: [] as Buffer[] };
  socket.on('message', (packet) => seen.packets.push(packet));
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(resolve)));
  return seen;
}

async function startCamera(port: number, sfu: Record<string, unknown> = {}): Promise<Camera> {
  const config = configSchema.parse({
    sfu,
    cameras: [{ name: 'gate', width: 320, height: 240, rtp: { port, rtcp: true } }],
  });
  const camera = new Camera(config.cameras[0]!, config.sfu, encoders, log, fast);
  cleanups.push(() => camera.stop());
  await camera.start();
  return camera;
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
