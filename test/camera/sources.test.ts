// Camera sources: libcamera, v4l2 and rtsp cameras as config and as pipelines (hostile strings stay
// property values, proven by GStreamer's own parser), what happens when a source cannot run on this
// box, and an RTSP camera passed through end to end against GStreamer's RTSP server on 127.0.0.1.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Camera } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { cameraChain } from '../../daemon/src/camera/pipeline.js';
import { renderPipeline } from '../../daemon/src/gst/describe.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { decodingReceiver, h264RtpCaps } from '../support/decoder.js';
import { freePort, REPO, runCliToEnd, tempDir, until, writeTemp } from '../support/processes.js';

const log = pino({ level: 'silent' });
const fast = { stallMs: 3000, backoffMinMs: 200, backoffMaxMs: 1000, exitGraceMs: 1000 };
const ENCODER_OR_DECODER = /x264enc|openh264enc|v4l2h264enc|avdec|decodebin|jpegdec/;

const encoders = new Encoders(log);
beforeAll(() => encoders.start());

const cameras: Camera[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  await Promise.all(cameras.splice(0).map((camera) => camera.stop()));
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

function cameraConfig(source: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const config = configSchema.parse({
    cameras: [{ name: 'door', width: 320, height: 240, framerate: 15, source, ...extra }],
  });
  return { camera: config.cameras[0]!, sfu: config.sfu };
}

/**
 * Parse (not play) a description the way the worker does, and print each asked element's asked
 * property: `[name, property]` pairs; a missing element prints null.
 */
function parseAndRead(description: string, reads: [string, string][]) {
  const script = `
    const { createRequire } = await import('node:module');
    const gst = createRequire(process.cwd() + '/')('gstreamer-superficial');
    const [description, reads] = process.argv.slice(1);
    const pipeline = new gst.Pipeline(description);
    const out = JSON.parse(reads).map(([name, prop]) => {
      const element = pipeline.findChild(name);
      return element ? element[prop] ?? null : null;
    });
    console.log(JSON.stringify(out));
    pipeline.stop();`;
  const result = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', script, description, JSON.stringify(reads)],
    { encoding: 'utf8', timeout: 20_000, cwd: REPO },
  );
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as unknown[];
}

/** GStreamer's RTSP server (test/support/rtsp-server.py) on 127.0.0.1; resolves its port. */
async function rtspServer(credentials: [string, string] | [] = []): Promise<number> {
  const server = spawn('/usr/bin/python3', [join(REPO, 'test/support/rtsp-server.py'), ...credentials], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(server);
  let stderr = '';
  server.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`RTSP server did not listen in 10 s: ${stderr}`)),
      10_000,
    );
    server.stdout.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      resolve(Number(chunk.toString().trim()));
    });
    server.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`RTSP server exited (${code}): ${stderr}`));
    });
  });
}

/** Decodes H.264 RTP on a loopback port; counts decoded frames of the given size. */
function receiverOf(port: number, width: number, height: number) {
  const receiver = decodingReceiver(port, { caps: h264RtpCaps(96), size: { width, height } });
  children.push(receiver.child);
  return receiver;
}

describe('camera sources in config', () => {
  it('accepts libcamera, v4l2 and rtsp sources with their defaults', () => {
    expect(cameraConfig({ type: 'libcamera' }).camera.source).toEqual({ type: 'libcamera' });
    expect(cameraConfig({ type: 'v4l2' }).camera.source).toEqual({
      type: 'v4l2',
      device: '/dev/video0',
      format: 'yuyv',
    });
    expect(cameraConfig({ type: 'rtsp', url: 'rtsp://10.0.0.9:554/stream1' }).camera.source).toEqual({
      type: 'rtsp',
      url: 'rtsp://10.0.0.9:554/stream1',
      latencyMs: 0,
      transport: 'auto',
    });
  });

  it('refuses an unknown source type, a device outside /dev, credentials in a URL and an encoder on rtsp', () => {
    const problems = (cameras: unknown[]) => {
      const result = configSchema.safeParse({ cameras });
      expect(result.success).toBe(false);
      return result.error!.issues.map((i) => i.message).join('\n');
    };
    expect(problems([{ name: 'a', source: { type: 'usb' } }])).toMatch(
      /source.type must be one of: test, libcamera, v4l2, rtsp/,
    );
    expect(problems([{ name: 'a', source: { type: 'v4l2', device: 'video0' } }])).toMatch(
      /\/dev\/video0 or a stable \/dev\/v4l\/by-id/,
    );
    expect(problems([{ name: 'a', source: { type: 'rtsp', url: 'rtsp://admin:hunter2@cam/s' } }])).toMatch(
      /credentials in source.username and source.password/,
    );
    expect(problems([{ name: 'a', source: { type: 'rtsp', url: 'http://cam/s' } }])).toMatch(/rtsp:\/\/HOST/);
    expect(
      problems([{ name: 'a', encoder: 'x264enc', source: { type: 'rtsp', url: 'rtsp://cam/s' } }]),
    ).toMatch(/passed through without re-encoding.*remove encoder/);
  });
});

describe('source pipelines', () => {
  it('v4l2: raw YUYV goes to the encoder without decoding; MJPEG is decoded by jpegdec first', () => {
    const { camera, sfu } = cameraConfig({ type: 'v4l2', device: '/dev/v4l/by-id/usb-cam-video-index0' });
    const raw = renderPipeline(cameraChain(camera, sfu, 'x264enc'));
    expect(raw).toMatch(
      /^v4l2src name="src" device="\/dev\/v4l\/by-id\/usb-cam-video-index0" ! video\/x-raw,format=\(string\)YUY2,width=\(int\)320,height=\(int\)240,framerate=\(fraction\)15\/1 ! videoconvert ! video\/x-raw,format=\(string\)I420 ! x264enc /,
    );
    expect(raw).not.toMatch(/jpegdec|avdec/);
    const mjpeg = cameraConfig({ type: 'v4l2', format: 'mjpeg' });
    expect(renderPipeline(cameraChain(mjpeg.camera, mjpeg.sfu, 'x264enc'))).toMatch(
      /v4l2src name="src" device="\/dev\/video0" ! image\/jpeg,width=\(int\)320,height=\(int\)240,framerate=\(fraction\)15\/1 ! jpegdec ! videoconvert ! video\/x-raw,format=\(string\)I420 ! x264enc/,
    );
  });

  it('libcamera: NV12 straight into the Pi encoder, with the camera name when given', () => {
    const { camera, sfu } = cameraConfig({ type: 'libcamera', cameraName: '/base/soc/i2c0mux/imx708@1a' });
    expect(renderPipeline(cameraChain(camera, sfu, 'v4l2h264enc'))).toMatch(
      /^libcamerasrc name="src" camera-name="\/base\/soc\/i2c0mux\/imx708@1a" ! video\/x-raw,format=\(string\)NV12,width=\(int\)320,height=\(int\)240,framerate=\(fraction\)15\/1 ! v4l2h264enc /,
    );
  });

  it('rtsp: depayload and payload again, no encoder or decoder; the password is redacted for logs', () => {
    const { camera, sfu } = cameraConfig({
      type: 'rtsp',
      url: 'rtsp://10.0.0.9/stream1',
      username: 'viewer',
      password: 's3cret',
      transport: 'tcp',
    });
    const description = renderPipeline(cameraChain(camera, sfu, undefined));
    expect(description).toMatch(
      /^rtspsrc name="src" location="rtsp:\/\/10.0.0.9\/stream1" user-id="viewer" user-pw="s3cret" latency=0 protocols="tcp" ! application\/x-rtp,media=\(string\)video,encoding-name=\(string\)H264 ! rtph264depay ! h264parse config-interval=-1 ! video\/x-h264,stream-format=\(string\)byte-stream,alignment=\(string\)au ! identity name="meter" silent=true ! rtph264pay /,
    );
    expect(description).not.toMatch(ENCODER_OR_DECODER);
    const logged = renderPipeline(cameraChain(camera, sfu, undefined), { redact: true });
    expect(logged).toContain('user-pw=<redacted>');
    expect(logged).not.toContain('s3cret');
  });

  it('a hostile device path, URL, user name or password stays one property value: no element is injected', async () => {
    const dir = await tempDir();
    const pwned = join(dir, 'pwned');
    const hostiles = [
      `/dev/video0" ! filesink location="${pwned}`,
      `/dev/video0\\" ! filesink location=${pwned}`,
      `/dev/video0 ! filesink location=${pwned}`,
    ];
    for (const hostile of hostiles) {
      const { camera, sfu } = cameraConfig({ type: 'v4l2', device: hostile });
      const description = renderPipeline(cameraChain(camera, sfu, 'x264enc'));
      expect(
        parseAndRead(description, [
          ['src', 'device'],
          ['filesink0', 'location'],
        ]),
        description,
      ).toEqual([hostile, null]);
      const rtsp = cameraConfig({
        type: 'rtsp',
        url: `rtsp://cam.lan/${hostile.slice('/dev/'.length)}`,
        username: hostile,
        password: hostile,
      });
      expect(rtsp.camera.source).toMatchObject({ url: `rtsp://cam.lan/${hostile.slice(5)}` });
      const rtspDescription = renderPipeline(cameraChain(rtsp.camera, rtsp.sfu, undefined));
      expect(
        parseAndRead(rtspDescription, [
          ['src', 'user-id'],
          ['src', 'user-pw'],
          ['filesink0', 'location'],
        ]),
        rtspDescription,
      ).toEqual([hostile, hostile, null]);
    }
    expect(existsSync(pwned)).toBe(false);
  });
});

describe('a source that cannot run here', () => {
  it('a missing v4l2 device: check-config names the camera and the fix and exits 2', async () => {
    const file = await writeTemp(
      'outpost.yaml',
      'cameras:\n  - name: porch\n    source:\n      type: v4l2\n      device: /dev/v4l/by-id/usb-nope-video-index0\n  - name: yard\n    rtp:\n      port: 5006\n',
    );
    const { code, stderr, stdout } = await runCliToEnd(['check-config', file]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(`${file}: 1 problem`);
    expect(stderr).toMatch(
      /cameras\[0\]\.source\.device = "\/dev\/v4l\/by-id\/usb-nope-video-index0": camera porch: \/dev\/v4l\/by-id\/usb-nope-video-index0 does not exist: plug the camera in, or set source.device to a path that `outpost cameras` lists/,
    );
  });

  it('check-config shows an rtsp camera with its password redacted', async () => {
    const file = await writeTemp(
      'outpost.yaml',
      'cameras:\n  - name: fence\n    source:\n      type: rtsp\n      url: rtsp://192.168.10.40/stream1\n      username: viewer\n      password: hunter2-camera\n',
    );
    const { code, stdout } = await runCliToEnd(['check-config', file]);
    expect(code).toBe(0);
    expect(stdout).toContain('password: <redacted>');
    expect(stdout).toContain('url: rtsp://192.168.10.40/stream1');
    expect(stdout).not.toContain('hunter2-camera');
  });

  it('a missing v4l2 device retries with backoff and says why; a libcamera camera on x86 is failed; a test camera beside them streams', async () => {
    const porch = cameraConfig({ type: 'v4l2', device: '/dev/video-not-here' });
    const pi = cameraConfig({ type: 'libcamera' });
    const rtpPort = await freePort();
    const yard = cameraConfig({ type: 'test' }, { name: 'yard', rtp: { port: rtpPort } });
    const receiver = receiverOf(rtpPort, 320, 240);
    for (const settings of [porch, pi, yard]) {
      const camera = new Camera({ camera: settings.camera, sfu: settings.sfu, encoders, log, timings: fast });
      cameras.push(camera);
      await camera.start();
    }
    const [porchCamera, piCamera, yardCamera] = cameras as [Camera, Camera, Camera];
    expect(piCamera.status()).toMatchObject({ state: 'failed', workerPid: undefined });
    expect(piCamera.status().lastError).toBe(
      'camera door: source libcamera cannot run here: libcamerasrc not installed: install gstreamer1.0-libcamera; this board has no Pi camera stack (install that package, or give this camera another source.type)',
    );
    await until(() => porchCamera.status().restarts >= 2, 10_000, 'two retries of the missing device');
    expect(porchCamera.status()).toMatchObject({ state: 'restarting', workerPid: undefined });
    expect(porchCamera.status().lastError).toMatch(
      /^camera door: \/dev\/video-not-here does not exist: plug the camera in/,
    );
    expect(porchCamera.healthy()).toBe(true);
    await until(() => receiver.frames >= 15, 15_000, 'the yard camera decoded beside them');
    await until(() => yardCamera.status().state === 'streaming', 5000, 'the yard camera streaming');
  });
});

describe('rtsp camera (GStreamer RTSP server on 127.0.0.1)', () => {
  it('passes the IP camera H.264 through to the SFU port without an encoder: a receiver decodes it', async () => {
    const serverPort = await rtspServer(['viewer', 'pa ss"word']);
    const rtpPort = await freePort();
    const { camera: settings, sfu } = cameraConfig(
      {
        type: 'rtsp',
        url: `rtsp://127.0.0.1:${serverPort}/cam`,
        username: 'viewer',
        password: 'pa ss"word',
      },
      { rtp: { port: rtpPort } },
    );
    expect(renderPipeline(cameraChain(settings, sfu, undefined))).not.toMatch(ENCODER_OR_DECODER);
    const receiver = receiverOf(rtpPort, 320, 240);
    const camera = new Camera({ camera: settings, sfu, encoders, log, timings: fast });
    cameras.push(camera);
    await camera.start();
    await until(() => receiver.frames >= 15, 20_000, '15 frames decoded from the passed-through stream');
    await until(() => camera.status().state === 'streaming', 5000, 'streaming');
    expect(camera.status().encoder).toBeUndefined();
    // The meter counts the camera's frames: the server sends 15 fps.
    await until(() => camera.status().fps !== undefined && camera.status().fps! > 0, 5000, 'fps');
    expect(camera.status().bitrateKbps).toBeGreaterThan(0);
  });

  it('a wrong password or no server: the camera retries with a reason, without the password in it', async () => {
    const serverPort = await rtspServer(['viewer', 'right']);
    const wrong = cameraConfig({
      type: 'rtsp',
      url: `rtsp://127.0.0.1:${serverPort}/cam`,
      username: 'viewer',
      password: 'wrong-password',
    });
    const absentPort = await freePort();
    const absent = cameraConfig(
      { type: 'rtsp', url: `rtsp://127.0.0.1:${absentPort}/cam` },
      { name: 'gone', rtp: { port: 5006 } },
    );
    for (const settings of [wrong, absent]) {
      const camera = new Camera({ camera: settings.camera, sfu: settings.sfu, encoders, log, timings: fast });
      cameras.push(camera);
      await camera.start();
    }
    const [wrongCamera, absentCamera] = cameras as [Camera, Camera];
    await until(() => wrongCamera.status().restarts >= 1, 15_000, 'a retry after a refused password');
    expect(wrongCamera.status().lastError).toMatch(/Unauthorized/);
    expect(wrongCamera.status().lastError).not.toContain('wrong-password');
    await until(() => absentCamera.status().restarts >= 1, 15_000, 'a retry with no server');
    expect(absentCamera.status().lastError).toMatch(/src: .*(Could not open|connect)/i);
    expect(absentCamera.status().state).toBe('restarting');
  });
});
