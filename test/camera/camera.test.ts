// A camera supervisor with the real worker process and real GStreamer: RTP arrives at the configured
// UDP port on loopback, and a worker that dies is replaced with backoff until packets flow again.
import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Camera, type CameraState } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { ssrcFor } from '../../daemon/src/camera/pipeline.js';
import { CameraStateReport } from '../../daemon/src/camera/state-report.js';
import { cameraStatePayload } from '../../daemon/src/mqtt/contract.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { decodingReceiver, h264RtpCaps } from '../support/decoder.js';
import { FAST_CAMERA } from '../support/cameras.js';
import { freeUdpPort, until } from '../support/processes.js';

const log = pino({ level: 'silent' });

const encoders = new Encoders(log);
beforeAll(() => encoders.start());

let camera: Camera | undefined;
let receiver: Socket | undefined;
afterEach(async () => {
  await camera?.stop();
  receiver?.close();
  camera = undefined;
  receiver = undefined;
});

/** A UDP receiver on a free loopback port that keeps the RTP headers it sees. */
async function rtpReceiver() {
  const socket = createSocket('udp4');
  const packets: { payloadType: number; ssrc: number; sequence: number }[] = [];
  socket.on('message', (packet) => {
    if (packet.length < 12 || packet[0]! >> 6 !== 2) return;
    packets.push({
      payloadType: packet[1]! & 0x7f,
      ssrc: packet.readUInt32BE(8),
      sequence: packet.readUInt16BE(2),
    });
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  receiver = socket;
  return { port: socket.address().port, packets };
}

function configFor(port: number, encoder = 'auto', extra: Record<string, unknown> = {}) {
  const config = configSchema.parse({
    cameras: [{ name: 'gate', width: 320, height: 240, encoder, rtp: { port, payloadType: 102 }, ...extra }],
  });
  return { camera: config.cameras[0]!, sfu: config.sfu };
}

describe('camera', () => {
  it('streams H.264 RTP with the configured payload type and a stable SSRC to the SFU port', async () => {
    const rtp = await rtpReceiver();
    const { camera: settings, sfu } = configFor(rtp.port);
    camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
    await camera.start();
    await until(() => camera!.status().state === 'streaming', 10_000, 'streaming');
    await until(() => rtp.packets.length >= 30, 5000, '30 RTP packets');
    expect(new Set(rtp.packets.map((p) => p.payloadType))).toEqual(new Set([102]));
    expect(new Set(rtp.packets.map((p) => p.ssrc))).toEqual(new Set([ssrcFor('gate')]));
    expect(camera.healthy()).toBe(true);
  });

  it('measures fps and bitrate in GStreamer: a 320x240@15 camera reports about 15 fps and bits flowing', async () => {
    const rtp = await rtpReceiver();
    const { camera: settings, sfu } = configFor(rtp.port, 'auto', { framerate: 15, bitrateKbps: 300 });
    camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
    const published: unknown[] = [];
    const report = new CameraStateReport({
      cameras: [{ camera, name: 'gate' }],
      site: 'site',
      device: 'box',
      publisher: {
        publish: (_topic, payload) => published.push(payload),
        stamp: () => ({ at: Date.now(), bootId: '0123456789abcdef', seq: published.length }),
      },
      log,
    });
    expect(camera.status()).toMatchObject({ fps: undefined, bitrateKbps: undefined });
    await camera.start();
    await report.start();
    try {
      // Rates come from the worker's once-a-second counters: the first one after two reports, and a
      // five-second window after six.
      await until(() => camera!.status().fps !== undefined, 10_000, 'a first fps measurement');
      // The report polls once a second: the first measurement is published within that, not at the 30 s refresh.
      const measured = (p: unknown) => (p as { fps: number | null }).fps !== null;
      await until(() => published.some(measured), 2500, 'camera state with a measured fps');
      const first = published.find(measured);
      expect(cameraStatePayload.parse(first)).toMatchObject({ state: 'streaming', camera: 'gate' });
      await until(() => rtp.packets.length > 0, 5000, 'RTP packets');
      await new Promise((resolve) => setTimeout(resolve, 5000)); // fill the 5 s window: a duration, not an event
      const { fps, bitrateKbps } = camera.status();
      expect(fps).toBeGreaterThanOrEqual(12);
      expect(fps).toBeLessThanOrEqual(18);
      expect(bitrateKbps).toBeGreaterThan(0);
      // x264's rate control aims at the configured 300 kbit/s; a test pattern lands well inside 4×.
      expect(bitrateKbps).toBeLessThan(1200);
    } finally {
      await report.stop();
    }
  });

  it('a GStreamer receiver on the SFU port decodes the frames at the configured size (static mode)', async () => {
    const port = await freeUdpPort();
    const { camera: settings, sfu } = configFor(port);
    // The size filter fails negotiation on a wrong size.
    const receiver = decodingReceiver(port, { caps: h264RtpCaps(102), size: { width: 320, height: 240 } });
    try {
      camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
      await camera.start();
      await until(() => receiver.frames >= 30, 15_000, '30 decoded frames');
    } finally {
      receiver.child.kill('SIGKILL');
    }
    expect(receiver.frames).toBeGreaterThanOrEqual(30);
  });

  it('a killed worker is replaced: restarting, then streaming again, with the same SSRC', async () => {
    const rtp = await rtpReceiver();
    const { camera: settings, sfu } = configFor(rtp.port);
    camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
    const states: CameraState[] = [];
    await camera.start();
    await until(() => camera!.status().state === 'streaming', 10_000, 'streaming');
    const firstPid = camera.status().workerPid;
    expect(firstPid).toBeDefined();
    const poll = setInterval(() => {
      const state = camera?.status().state;
      if (state && states.at(-1) !== state) states.push(state);
    }, 20);
    process.kill(firstPid!, 'SIGKILL');
    await until(
      () => camera!.status().restarts === 1 && camera!.status().state === 'streaming',
      15_000,
      'restart',
    );
    clearInterval(poll);
    expect(states).toContain('restarting');
    expect(camera.status().workerPid).not.toBe(firstPid);
    expect(camera.status().lastError).toMatch(/worker exited \(SIGKILL\)/);
    const before = rtp.packets.length;
    await until(() => rtp.packets.length > before + 10, 5000, 'packets after restart');
    expect(new Set(rtp.packets.map((p) => p.ssrc))).toEqual(new Set([ssrcFor('gate')]));
    expect(camera.healthy()).toBe(true);
  });

  it.each(['x264enc', 'openh264enc'])('streams with %s when the config forces it', async (encoder) => {
    const rtp = await rtpReceiver();
    const { camera: settings, sfu } = configFor(rtp.port, encoder);
    camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
    await camera.start();
    await until(() => rtp.packets.length >= 20, 10_000, '20 RTP packets');
    expect(camera.status().encoder).toBe(encoder);
  });

  it('a forced encoder this box lacks: the camera is failed with the reason, and does not retry', async () => {
    const rtp = await rtpReceiver();
    const { camera: settings, sfu } = configFor(rtp.port, 'v4l2h264enc');
    camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
    await camera.start();
    expect(camera.status()).toMatchObject({ state: 'failed', workerPid: undefined, restarts: 0 });
    expect(camera.status().lastError).toMatch(
      /camera gate: encoder v4l2h264enc is forced .* no hardware H\.264 encoder/,
    );
    expect(camera.healthy()).toBe(true);
  });

  it('stop ends the worker process and resolves only once it has exited', async () => {
    const rtp = await rtpReceiver();
    const { camera: settings, sfu } = configFor(rtp.port);
    camera = new Camera({ camera: settings, sfu, encoders, log, timings: FAST_CAMERA });
    await camera.start();
    const pid = camera.status().workerPid!;
    await camera.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    expect(camera.status().state).toBe('stopped');
    expect(camera.healthy()).toBe(false);
  });
});
