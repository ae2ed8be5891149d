// Outpost viewer: a dependency-free Janus streaming client over Janus's HTTP API (create a session,
// attach one streaming handle per mountpoint, `list`, `watch`, answer the offer, long-poll for events)
// that plays every mountpoint (or those in ?play=) with the lowest-latency receiver settings. For
// frames that carry the latency stamp (stamped test source), each decoded frame's stamp is read in a
// requestVideoFrameCallback and now − stamp is recorded; `window.outpostViewer` exposes the samples
// to bench:latency. No build step: stamp.js is the daemon's compiled stamp codec, served beside this.
import { readStamp, STAMP_HEIGHT, STAMP_WIDTH } from './stamp.js';

const params = new URLSearchParams(location.search);
const janusUrl = params.get('janus') ?? `${location.protocol}//${location.hostname}:8088/janus`;
const play = params.get('play') ?? 'all';
const statusLine = document.getElementById('status');
const streams = document.getElementById('streams');

/** Per mountpoint id: { samples: [{ counter, timeMs, at, presentedAt }], unreadable, pc }. */
const viewers = new Map();

function transaction() {
  return Math.random().toString(36).slice(2, 14);
}

async function janus(path, body) {
  const response = await fetch(`${janusUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, transaction: transaction() }),
  });
  const reply = await response.json();
  if (reply.janus === 'error') throw new Error(`Janus: ${reply.error.reason} (${reply.error.code})`);
  return reply;
}

/** Long-poll the session for events (Janus's HTTP transport); each GET also keeps the session alive. */
async function pollEvents(session, handlers) {
  for (;;) {
    let events;
    try {
      const response = await fetch(`${janusUrl}/${session}?maxev=10&rid=${Date.now()}`);
      events = await response.json();
    } catch (error) {
      statusLine.textContent = `lost Janus: ${error.message}; retrying`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    for (const event of Array.isArray(events) ? events : [events]) {
      handlers.get(event.sender)?.(event);
    }
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function watchFrames(id, video, caption) {
  const viewer = viewers.get(id);
  const canvas = document.createElement('canvas');
  canvas.width = STAMP_WIDTH;
  canvas.height = STAMP_HEIGHT;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  const onFrame = (_now, metadata) => {
    const at = Date.now();
    // Only the stamp's corner is drawn and read: 128 × 160 pixels, not the whole frame.
    context.drawImage(video, 0, 0, STAMP_WIDTH, STAMP_HEIGHT, 0, 0, STAMP_WIDTH, STAMP_HEIGHT);
    const { data } = context.getImageData(0, 0, STAMP_WIDTH, STAMP_HEIGHT);
    const stamp = readStamp({ data, width: STAMP_WIDTH, height: STAMP_HEIGHT, format: 'RGBA' });
    if (stamp) {
      viewer.samples.push({
        ...stamp,
        at,
        // When the frame was handed to the compositor, on the same wall clock.
        presentedAt: performance.timeOrigin + metadata.presentationTime,
      });
    } else {
      viewer.unreadable++;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  setInterval(() => {
    const recent = viewer.samples.slice(-90).map((s) => s.at - s.timeMs);
    recent.sort((a, b) => a - b);
    caption.textContent = recent.length
      ? `mountpoint ${id}: ${video.videoWidth}×${video.videoHeight}, latency p50 ${percentile(recent, 50)} ms, ` +
        `p95 ${percentile(recent, 95)} ms (last ${recent.length} frames)`
      : `mountpoint ${id}: ${video.videoWidth}×${video.videoHeight}, no stamp`;
  }, 1000);
}

async function watch(session, handlers, mountpoint) {
  const id = mountpoint.id;
  const attached = await janus(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' });
  const handle = attached.data.id;
  const figure = document.createElement('figure');
  const video = document.createElement('video');
  const caption = document.createElement('figcaption');
  Object.assign(video, { muted: true, autoplay: true, playsInline: true });
  caption.textContent = `mountpoint ${id}: ${mountpoint.description ?? ''}`;
  figure.append(video, caption);
  streams.append(figure);

  const pc = new RTCPeerConnection({ iceServers: [] });
  viewers.set(id, { samples: [], unreadable: 0, pc });
  pc.ontrack = (event) => {
    // Chromium: ask for no playout delay and no jitter-buffer target beyond what decoding needs.
    if ('playoutDelayHint' in event.receiver) event.receiver.playoutDelayHint = 0;
    if ('jitterBufferTarget' in event.receiver) event.receiver.jitterBufferTarget = 0;
    video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
  };
  handlers.set(handle, async (event) => {
    if (event.janus === 'trickle' && event.candidate && !event.candidate.completed) {
      await pc.addIceCandidate(event.candidate);
      return;
    }
    if (!event.jsep || event.jsep.type !== 'offer') return;
    await pc.setRemoteDescription(event.jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    // Loopback only: gathering completes at once, so the answer carries its candidates (no trickle).
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((resolve) =>
        pc.addEventListener(
          'icegatheringstatechange',
          () => pc.iceGatheringState === 'complete' && resolve(),
        ),
      );
    }
    const { type, sdp } = pc.localDescription;
    await janus(`/${session}/${handle}`, {
      janus: 'message',
      body: { request: 'start' },
      jsep: { type, sdp, trickle: false },
    });
    // Ask Janus to send the playout-delay extension with 0/0 (mountpoints created with
    // playoutdelay_ext): Chromium's zero-delay rendering path, no smoothing.
    await janus(`/${session}/${handle}`, {
      janus: 'message',
      body: { request: 'configure', min_delay: 0, max_delay: 0 },
    });
  });
  await janus(`/${session}/${handle}`, { janus: 'message', body: { request: 'watch', id } });
  watchFrames(id, video, caption);
}

async function main() {
  const created = await janus('', { janus: 'create' });
  const session = created.data.id;
  const handlers = new Map();
  void pollEvents(session, handlers);
  const lister = await janus(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' });
  const listed = await janus(`/${session}/${lister.data.id}`, {
    janus: 'message',
    body: { request: 'list' },
  });
  const all = listed.plugindata.data.list ?? [];
  const wanted = play === 'all' ? all : all.filter((m) => play.split(',').includes(String(m.id)));
  statusLine.textContent = `Janus ${janusUrl}: ${all.length} mountpoint(s); playing ${wanted.map((m) => m.id).join(', ') || 'none'}`;
  for (const mountpoint of wanted) await watch(session, handlers, mountpoint);
}

window.outpostViewer = {
  ready: false,
  error: undefined,
  /** Stamped frames decoded so far on mountpoint `id` (all mountpoints when omitted). */
  samples(id) {
    return id === undefined
      ? [...viewers.values()].flatMap((v) => v.samples)
      : (viewers.get(id)?.samples ?? []);
  },
  mountpoints() {
    return [...viewers.keys()];
  },
  unreadable() {
    return [...viewers.values()].reduce((sum, v) => sum + v.unreadable, 0);
  },
  /** Forget the samples so far (bench:latency phases). */
  reset() {
    for (const viewer of viewers.values()) {
      viewer.samples = [];
      viewer.unreadable = 0;
    }
  },
  /** The receiver's WebRTC inbound video statistics for mountpoint `id`. */
  async inbound(id) {
    const stats = await viewers.get(id)?.pc.getStats();
    for (const report of stats?.values() ?? []) {
      if (report.type === 'inbound-rtp' && report.kind === 'video') return report;
    }
    return undefined;
  },
};

main().then(
  () => (window.outpostViewer.ready = true),
  (error) => {
    window.outpostViewer.error = error.message;
    statusLine.textContent = `error: ${error.message}`;
  },
);
