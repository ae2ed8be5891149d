// sfu.mode janus against the real Janus 1.1.2 from Debian: each camera gets a streaming mountpoint that
// receives its RTP; a Janus restart is noticed and the mountpoint comes back; SRTP is decrypted by
// Janus with the box's key; a Janus that is down never stops the camera.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { JanusMountpoints, type MountpointStatus } from '../../daemon/src/camera/janus.js';
import { configSchema } from '../../daemon/src/config/schema.js';
import { janusServer, type TestJanus } from '../support/janus.js';
import { cameraOnJanus, FAST_JANUS } from '../support/cameras.js';
import { daemonConfig, freePort, freeUdpPort, freeUdpPortPair, runCli, until } from '../support/processes.js';

const log = pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
const API_SECRET = 'api-secret-1';
const ADMIN_KEY = 'admin-key-1';

const encoders = new Encoders(log);
beforeAll(() => encoders.start());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startJanus(): Promise<TestJanus> {
  const janus = await janusServer({ apiSecret: API_SECRET, adminKey: ADMIN_KEY });
  cleanups.push(() => janus.stop());
  return janus;
}

/** A daemon's camera in janus mode: the adapter and the camera, started in the app's order. */
async function startDaemonCamera(
  url: string,
  sfu: Record<string, unknown> = {},
  timings = FAST_JANUS,
  janusLog = log,
  rtp: { port?: number; rtcp?: boolean } = {},
) {
  const rtpPort = rtp.port ?? (await freeUdpPort());
  const config = configSchema.parse({
    site: 'test',
    device: 'box1',
    sfu: {
      mode: 'janus',
      janus: { url, apiSecret: API_SECRET, adminKey: ADMIN_KEY, secret: 'edit-me', mountpointIdBase: 4200 },
      ...sfu,
    },
    cameras: [{ name: 'gate', width: 320, height: 240, rtp: { ...rtp, port: rtpPort } }],
  });
  const { camera, mountpoints } = cameraOnJanus({
    janus: config,
    encoders,
    log,
    janusTimings: timings,
    janusLog,
    cleanups,
  });
  await mountpoints.start();
  await camera.start();
  return { camera, mountpoints, rtpPort, mountpoint: (): MountpointStatus => camera.status().mountpoint! };
}

/** Janus's own view of a mountpoint, asked over its HTTP API by a separate session (not the daemon's). */
async function janusInfo(url: string, id: number): Promise<Record<string, unknown> | undefined> {
  const post = async (path: string, body: Record<string, unknown>) => {
    const response = await fetch(url + path, {
      method: 'POST',
      body: JSON.stringify({ ...body, transaction: 't', apisecret: API_SECRET }),
      signal: AbortSignal.timeout(2000),
    });
    return (await response.json()) as {
      data?: { id: number };
      plugindata?: { data: Record<string, unknown> };
    };
  };
  const session = (await post('', { janus: 'create' })).data!.id;
  try {
    const handle = (await post(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data!
      .id;
    const reply = await post(`/${session}/${handle}`, {
      janus: 'message',
      // With the admin key Janus shows the full settings, keyframe buffering among them.
      body: { request: 'info', id, secret: 'edit-me', admin_key: ADMIN_KEY },
    });
    return reply.plugindata?.data.info as Record<string, unknown> | undefined;
  } finally {
    await post(`/${session}`, { janus: 'destroy' });
  }
}

/** Resolves once Janus reports RTP on the mountpoint less than 500 ms old; bounded by `ms`. */
async function janusReceiving(url: string, id: number, ms: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  let last: Record<string, unknown> | undefined;
  for (;;) {
    last = await janusInfo(url, id).catch(() => undefined);
    const age = (last?.media as Array<{ age_ms?: number }> | undefined)?.[0]?.age_ms;
    if (age !== undefined && age < 500) return last!;
    if (Date.now() > deadline)
      throw new Error(`Janus shows no fresh RTP on ${id} within ${ms} ms: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The SDP offer Janus makes to a new viewer of mountpoint `id` (a throwaway session of our own). */
async function viewerOffer(url: string, id: number): Promise<string> {
  const post = async (path: string, body: Record<string, unknown>) => {
    const response = await fetch(url + path, {
      method: 'POST',
      body: JSON.stringify({ ...body, transaction: 't', apisecret: API_SECRET }),
      signal: AbortSignal.timeout(2000),
    });
    return (await response.json()) as { data?: { id: number } };
  };
  const session = (await post('', { janus: 'create' })).data!.id;
  try {
    const handle = (await post(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data!
      .id;
    await post(`/${session}/${handle}`, { janus: 'message', body: { request: 'watch', id } });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const response = await fetch(`${url}/${session}?maxev=5&apisecret=${API_SECRET}`, {
        signal: AbortSignal.timeout(5000),
      });
      const events: unknown = await response.json();
      for (const event of (Array.isArray(events) ? events : [events]) as Array<{ jsep?: { sdp: string } }>)
        if (event.jsep) return event.jsep.sdp;
    }
    throw new Error(`no offer from Janus for mountpoint ${id}`);
  } finally {
    await post(`/${session}`, { janus: 'destroy' });
  }
}

/** Local addresses (hex, as in /proc/net/udp) of the UDP sockets bound to `port`. */
async function udpBindings(port: number): Promise<string[]> {
  const table = await readFile('/proc/net/udp', 'utf8');
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return table
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/)[1] ?? '')
    .filter((local) => local.endsWith(`:${hexPort}`))
    .map((local) => local.split(':')[0]!);
}

describe('Janus mountpoints (sfu.mode janus)', () => {
  it('the camera gets a mountpoint on Janus, and Janus receives its RTP', async () => {
    const janus = await startJanus();
    const began = Date.now();
    const { camera, rtpPort, mountpoint } = await startDaemonCamera(janus.url);
    const info = await janusReceiving(janus.url, 4200, 15_000);
    log.info({ ms: Date.now() - began }, 'janus: mountpoint receiving after the daemon started');
    expect(info).toMatchObject({
      id: 4200,
      name: 'box1-gate',
      description: 'test/box1 gate',
      media: [{ type: 'video', mid: 'v', codec: 'h264', pt: 96, port: rtpPort, videobufferkf: true }],
    });
    expect((info.media as Array<{ fmtp: string }>)[0]!.fmtp).toBe(
      'profile-level-id=42e01e;packetization-mode=1',
    );
    await until(() => (mountpoint().ageMs ?? Infinity) < 1000, 5000, 'the daemon to see fresh age_ms');
    expect(mountpoint()).toMatchObject({ id: 4200, state: 'present', reason: undefined, creations: 1 });
    await until(() => camera.status().state === 'streaming', 5000, 'the camera to report streaming');
  });

  it('a mountpoint for a camera sending on loopback listens on 127.0.0.1 only and offers zero playout delay', async () => {
    const janus = await startJanus();
    const { rtpPort } = await startDaemonCamera(janus.url);
    await janusReceiving(janus.url, 4200, 15_000);
    // 0100007F is 127.0.0.1 in /proc/net/udp's little-endian hex; 00000000 would be every interface.
    expect(await udpBindings(rtpPort)).toEqual(['0100007F']);
    expect(await viewerOffer(janus.url, 4200)).toContain(
      'http://www.webrtc.org/experiments/rtp-hdrext/playout-delay',
    );
  });

  it('Janus restarted: the mountpoint is re-created and RTP reaches it again', async () => {
    const janus = await startJanus();
    const { camera, mountpoint } = await startDaemonCamera(janus.url);
    await janusReceiving(janus.url, 4200, 15_000);

    await janus.stop();
    await until(() => mountpoint().state === 'missing', 5000, 'the mountpoint to be reported missing');
    expect(mountpoint().reason).toMatch(
      /^Janus at http:\/\/127\.0\.0\.1:\d+\/janus unreachable: ECONNREFUSED/,
    );
    // Janus down is no reason to stop the camera: it keeps sending RTP.
    const packets = camera.status().packets;
    await until(() => camera.status().packets > packets + 30, 15_000, 'RTP while Janus is down');
    expect(camera.status().state).toBe('streaming');

    const restarted = Date.now();
    await janus.start();
    await janusReceiving(janus.url, 4200, 15_000);
    log.info({ ms: Date.now() - restarted }, 'janus: mountpoint receiving again after Janus came back');
    await until(() => mountpoint().state === 'present', 5000, 'the daemon to see the mountpoint');
    expect(mountpoint().creations).toBe(2);
  });

  it('a Janus restart between two checks is seen as a lost session, and the mountpoint comes back', async () => {
    const janus = await startJanus();
    // Checks 3 s apart, so that the restart (well under a second) falls between two of them and the
    // next keepalive meets a Janus that never heard of the session (458), not a refused connection.
    const events: string[] = [];
    const recorder = pino({ level: 'info' }, { write: (line: string) => events.push(line) });
    const { mountpoint } = await startDaemonCamera(janus.url, {}, { ...FAST_JANUS, checkMs: 3000 }, recorder);
    await until(() => mountpoint().creations === 1, 10_000, 'first creation');
    await janus.restart();
    await until(() => mountpoint().creations === 2, 10_000, 'the mountpoint to be re-created');
    await janusReceiving(janus.url, 4200, 15_000);
    expect(events.join('')).toMatch(/"msg":"janus session gone"/);
    expect(events.join('')).not.toMatch(/unreachable/);
  });

  it('replaces a mountpoint on its id whose settings differ (another port)', async () => {
    const janus = await startJanus();
    // Someone's stale mountpoint on our id, listening on another port.
    const stalePort = await freeUdpPort();
    const response = await fetch(janus.url, {
      method: 'POST',
      body: JSON.stringify({ janus: 'create', transaction: 't', apisecret: API_SECRET }),
    });
    const session = ((await response.json()) as { data: { id: number } }).data.id;
    const attach = await fetch(`${janus.url}/${session}`, {
      method: 'POST',
      body: JSON.stringify({
        janus: 'attach',
        plugin: 'janus.plugin.streaming',
        transaction: 't',
        apisecret: API_SECRET,
      }),
    });
    const handle = ((await attach.json()) as { data: { id: number } }).data.id;
    const created = await fetch(`${janus.url}/${session}/${handle}`, {
      method: 'POST',
      body: JSON.stringify({
        janus: 'message',
        transaction: 't',
        apisecret: API_SECRET,
        body: {
          request: 'create',
          type: 'rtp',
          id: 4200,
          admin_key: ADMIN_KEY,
          secret: 'edit-me',
          media: [{ type: 'video', mid: 'v', port: stalePort, pt: 96, codec: 'h264' }],
        },
      }),
    });
    expect(JSON.stringify(await created.json())).toContain('"created"');

    const { rtpPort } = await startDaemonCamera(janus.url);
    const info = await janusReceiving(janus.url, 4200, 15_000);
    expect((info.media as Array<{ port: number }>)[0]!.port).toBe(rtpPort);
  });

  // Janus updates age_ms before it unprotects a packet (seen here: age_ms 10 with the wrong key), so
  // fresh age alone does not prove decryption; the absence of its "SRTP unprotect error" lines does,
  // and the control test shows that those lines appear when the keys differ.
  it('SRTP: Janus decrypts the stream with the key the camera encrypts with', async () => {
    const janus = await startJanus();
    const key = randomBytes(30).toString('base64');
    const { camera } = await startDaemonCamera(janus.url, {
      srtp: { suite: 'AES_CM_128_HMAC_SHA1_80', key },
    });
    await janusReceiving(janus.url, 4200, 15_000);
    // Long enough for the control below to see its errors (it sees them within the first packets).
    const packets = camera.status().packets;
    await until(() => camera.status().packets > packets + 60, 15_000, '60 more packets into Janus');
    // Janus logs every packet it cannot unprotect; with the right key there is none.
    expect(janus.output()).not.toMatch(/SRTP unprotect error/);
  });

  // A new worker's RTP sequence starts afresh: below the last one half the time, which the mountpoint's
  // SRTP context drops as replays (srtp_err_status_replay_old) until the mountpoint is re-created.
  it('SRTP: a camera that starts again gets its mountpoint re-created, and Janus decrypts the new stream', async () => {
    const janus = await startJanus();
    const key = randomBytes(30).toString('base64');
    const { camera, mountpoint } = await startDaemonCamera(janus.url, {
      srtp: { suite: 'AES_CM_128_HMAC_SHA1_80', key },
    });
    await janusReceiving(janus.url, 4200, 15_000);
    const created = mountpoint().creations;
    await camera.stop();
    await camera.start();
    await until(() => mountpoint().creations === created + 1, 10_000, 'the mountpoint re-created');
    const logged = janus.output().length;
    const packets = camera.status().packets;
    await until(() => camera.status().packets > packets + 60, 15_000, '60 more packets into Janus');
    await janusReceiving(janus.url, 4200, 15_000);
    expect(janus.output().slice(logged)).not.toMatch(/SRTP unprotect error/);
  });

  it('SRTP control: a mountpoint given another key than the camera cannot unprotect a packet', async () => {
    const janus = await startJanus();
    const cameraKey = randomBytes(30).toString('base64');
    const { camera, rtpPort } = await startDaemonCamera(janus.url, {
      srtp: { suite: 'AES_CM_128_HMAC_SHA1_80', key: cameraKey },
    });
    // A second adapter that owns the mountpoint with another key (the daemon's own one is stopped).
    await cleanups.at(-2)!();
    const config = configSchema.parse({
      sfu: {
        mode: 'janus',
        srtp: { key: randomBytes(30).toString('base64') },
        janus: {
          url: janus.url,
          apiSecret: API_SECRET,
          adminKey: ADMIN_KEY,
          secret: 'edit-me',
          mountpointIdBase: 4200,
        },
      },
      cameras: [{ name: 'gate', width: 320, height: 240, rtp: { port: rtpPort } }],
    });
    const other = new JanusMountpoints(config, log, FAST_JANUS);
    cleanups.push(() => other.stop());
    await other.start();
    await until(() => /SRTP unprotect error/.test(janus.output()), 15_000, 'Janus to refuse the packets');
    await until(() => camera.status().state === 'streaming', 20_000, 'the camera streaming regardless');
  });

  it('Janus unreachable: the camera streams anyway and its status says why', async () => {
    const closedPort = await freePort();
    const { camera, mountpoint } = await startDaemonCamera(`http://127.0.0.1:${closedPort}/janus`);
    await until(() => camera.status().state === 'streaming', 10_000, 'streaming');
    await until(() => mountpoint().reason !== 'not checked yet', 5000, 'a first check');
    expect(mountpoint()).toMatchObject({ state: 'missing', creations: 0 });
    expect(mountpoint().reason).toBe(
      `Janus at http://127.0.0.1:${closedPort}/janus unreachable: ECONNREFUSED (check that Janus runs and that sfu.janus.url points at its HTTP transport (janus.transport.http.jcfg))`,
    );
    expect(camera.healthy()).toBe(true);
  });

  it('outpost run with sfu.mode janus creates the mountpoint and logs it', async () => {
    const janus = await startJanus();
    const { file, rtpPort } = await daemonConfig(
      `sfu:\n  mode: janus\n  janus:\n    url: ${janus.url}\n    apiSecret: ${API_SECRET}\n    adminKey: ${ADMIN_KEY}\n`,
    );
    const daemon = runCli(['run', '--config', file]);
    cleanups.push(async () => {
      daemon.child.kill('SIGTERM');
      await daemon.exited();
    });
    const created = await daemon.waitForLog((line) => line.msg === 'janus mountpoint created');
    expect(created).toMatchObject({ camera: 'cam0', id: 1000, port: rtpPort, srtp: 'off' });
    await janusReceiving(janus.url, 1000, 15_000);
    daemon.child.kill('SIGTERM');
    expect((await daemon.exited()).code).toBe(0);
    expect(daemon.stdout()).not.toContain(ADMIN_KEY);
  });

  // Janus 1.1.2's streaming plugin has no SRTCP error message to look for, so this shows the RTCP port
  // and that RTP is still unprotected, not what Janus makes of the SRTCP reports.
  it('rtp.rtcp with SRTP: the mountpoint takes RTCP on rtp.port + 1 and still unprotects the RTP', async () => {
    const janus = await startJanus();
    const key = randomBytes(30).toString('base64');
    const rtpPort = await freeUdpPortPair();
    const { camera } = await startDaemonCamera(janus.url, { srtp: { key } }, FAST_JANUS, log, {
      port: rtpPort,
      rtcp: true,
    });
    const info = await janusReceiving(janus.url, 4200, 15_000);
    expect(info.media).toMatchObject([{ port: rtpPort, rtcpport: rtpPort + 1 }]);
    const packets = camera.status().packets;
    await until(() => camera.status().packets > packets + 150, 10_000, '150 more packets into Janus');
    expect(janus.output()).not.toMatch(/unprotect error/i);
  });
});
