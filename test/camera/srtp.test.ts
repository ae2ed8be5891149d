// SRTP on the camera's RTP: a GStreamer receiver with the box's key decodes the frames; one with another
// key, fed the very same packets, decodes none. Keys come inline or from a 0600 file, and a bad key is
// an error that names the key and the fix, never the key itself.
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Camera } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { cameraChain, ssrcFor } from '../../daemon/src/camera/pipeline.js';
import { renderPipeline } from '../../daemon/src/gst/describe.js';
import { parseConfig, redactSecrets } from '../../daemon/src/config/load.js';
import { ConfigError } from '../../daemon/src/errors.js';
import { configSchema, SRTP_SUITES, type SrtpSuite } from '../../daemon/src/config/schema.js';
import { decodingReceiver } from '../support/decoder.js';
import { FAST_CAMERA } from '../support/cameras.js';
import { freeUdpPort, tempDir, until } from '../support/processes.js';

const log = pino({ level: 'silent' });
const encoders = new Encoders(log);
beforeAll(() => encoders.start());

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function boundUdp(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return socket;
}

/** The camera's port: every packet is copied to each of `to`, so several receivers see the same stream. */
async function fanOut(to: number[]): Promise<number> {
  const socket = await boundUdp();
  socket.on('message', (packet) => {
    for (const port of to) socket.send(packet, port, '127.0.0.1');
  });
  cleanups.push(() => new Promise<void>((resolve) => socket.close(resolve)));
  return socket.address().port;
}

/** `udpsrc ! srtpdec ! … ! avdec_h264 ! checksumsink`: counts decoded frames. */
function srtpReceiver(port: number, suite: SrtpSuite, key: Buffer, ssrc: number) {
  const { cipher, auth } = SRTP_SUITES[suite];
  // srtpdec takes its key per SSRC from the caps (srtp-key is a GstBuffer, written as hex).
  const caps =
    `application/x-srtp,media=video,clock-rate=90000,encoding-name=H264,payload=96,ssrc=(uint)${ssrc},` +
    `srtp-key=(buffer)${key.toString('hex')},srtp-cipher=(string)${cipher},srtp-auth=(string)${auth},` +
    `srtcp-cipher=(string)${cipher},srtcp-auth=(string)${auth}`;
  const receiver = decodingReceiver(port, { caps, srtp: true });
  cleanups.push(() => {
    receiver.child.kill('SIGKILL');
  });
  return receiver;
}

function srtpConfig(port: number, srtp: Record<string, unknown>) {
  const config = configSchema.parse({
    sfu: { srtp },
    cameras: [{ name: 'gate', width: 320, height: 240, rtp: { port } }],
  });
  return { camera: config.cameras[0]!, sfu: config.sfu };
}

async function startCamera(settings: ReturnType<typeof srtpConfig>): Promise<Camera> {
  const camera = new Camera({
    camera: settings.camera,
    sfu: settings.sfu,
    encoders,
    log,
    timings: FAST_CAMERA,
  });
  cleanups.push(() => camera.stop());
  await camera.start();
  return camera;
}

describe('SRTP', () => {
  it.each(['AES_CM_128_HMAC_SHA1_80', 'AEAD_AES_128_GCM'] as const)(
    '%s: a receiver with the key decodes the frames; one with another key decodes none',
    async (suite) => {
      const bytes = SRTP_SUITES[suite].keyBytes;
      const key = randomBytes(bytes);
      const right = await freeUdpPort();
      const wrong = await freeUdpPort();
      const good = srtpReceiver(right, suite, key, ssrcFor('gate'));
      const bad = srtpReceiver(wrong, suite, randomBytes(bytes), ssrcFor('gate'));
      const port = await fanOut([right, wrong]);
      await startCamera(srtpConfig(port, { suite, key: key.toString('base64') }));
      await until(() => good.frames >= 30, 15_000, '30 frames decoded with the right key');
      expect(bad.frames).toBe(0);
    },
  );

  it('reads the key from a 0600 file; a file others can read fails the camera with the chmod fix', async () => {
    const key = randomBytes(30);
    const file = join(await tempDir(), 'srtp.key');
    await writeFile(file, `${key.toString('base64')}\n`, { mode: 0o644 });
    const receiverPort = await freeUdpPort();
    const good = srtpReceiver(receiverPort, 'AES_CM_128_HMAC_SHA1_80', key, ssrcFor('gate'));

    await chmod(file, 0o644);
    const refused = await startCamera(srtpConfig(receiverPort, { keyFile: file }));
    expect(refused.status()).toMatchObject({ state: 'failed', workerPid: undefined });
    expect(refused.status().lastError).toBe(
      `sfu.srtp.keyFile ${file} is readable by group or others (mode 0644) (run: chmod 600 ${file} (and keep it owned by the service user))`,
    );

    await chmod(file, 0o600);
    await startCamera(srtpConfig(receiverPort, { keyFile: file }));
    await until(() => good.frames >= 30, 15_000, '30 frames decoded with the key from the file');
  });

  it('a key of the wrong length is a config error naming the key, the length needed and how to make one', () => {
    const short = randomBytes(16).toString('base64');
    const text = `sfu:\n  srtp:\n    suite: AES_CM_128_HMAC_SHA1_80\n    key: ${short}\n`;
    let error: unknown;
    try {
      parseConfig(text, 'outpost.yaml');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({
      path: 'sfu.srtp.key',
      line: 4,
      message:
        'decodes to 16 bytes; AES_CM_128_HMAC_SHA1_80 needs 30 (master key + salt); make one with: head -c 30 /dev/urandom | base64',
    });
    expect(JSON.stringify(problems)).not.toContain(short);
  });

  it('config: key and keyFile are exclusive, GCM is refused with Janus, SSRCs must differ', () => {
    const key = randomBytes(28).toString('base64');
    const result = configSchema.safeParse({
      sfu: { mode: 'janus', srtp: { suite: 'AEAD_AES_128_GCM', key } },
      cameras: [
        { name: 'a', rtp: { port: 5004, ssrc: 7 } },
        { name: 'b', rtp: { port: 5006, ssrc: 7 } },
      ],
    });
    expect(result.success).toBe(false);
    const messages = result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(messages).toEqual([
      "sfu.srtp.suite: Janus's streaming plugin decrypts only AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32; pick one of those",
      'cameras.1.rtp.ssrc: SSRC already used by cameras[0]; with SRTP every camera needs its own SSRC',
    ]);
    const both = configSchema.safeParse({ sfu: { srtp: { key, keyFile: '/etc/outpost/srtp.key' } } });
    expect(both.error?.issues.map((i) => i.message)).toEqual([
      'give exactly one of sfu.srtp.key (inline base64) or sfu.srtp.keyFile (a 0600 file)',
    ]);
  });

  it('the key reaches srtpenc as hex, and check-config and the log line show it redacted', () => {
    const key = randomBytes(30);
    const config = configSchema.parse({ sfu: { srtp: { key: key.toString('base64') } } });
    const chain = cameraChain(config.cameras[0]!, config.sfu, 'x264enc', {
      suite: 'AES_CM_128_HMAC_SHA1_80',
      masterKey: key,
    });
    expect(renderPipeline(chain)).toContain(
      `srtpenc key=${key.toString('hex')} rtp-cipher="aes-128-icm" rtp-auth="hmac-sha1-80"`,
    );
    const logged = renderPipeline(chain, { redact: true });
    expect(logged).toContain('srtpenc key=<redacted> ');
    expect(logged).not.toContain(key.toString('hex'));
    expect(JSON.stringify(redactSecrets(config))).not.toContain(key.toString('base64'));
  });
});
