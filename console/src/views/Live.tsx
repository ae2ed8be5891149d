// Live: one tile per camera on the site, from the retained camera states (no list typed by hand). A
// tile plays its Janus mountpoint while it is on screen and hangs up when it scrolls away; it comes
// back by itself after a Janus restart or a network drop (new Janus session, new PeerConnection),
// and when its picture stops advancing for 3 s. Each shows the camera's state, the reason when it is
// not streaming, and fps and bitrate as measured at the box.
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { JanusSession, MountpointViewer } from '../janus.js';
import { useSite } from '../hooks.js';
import { clearTileMarks, markPage, markTile } from '../marks.js';
import type { CameraStatePayload, Site } from '../site.js';

/** One Janus session for every tile of the page; a lost one is replaced on the next request. */
class JanusPool {
  private session: Promise<JanusSession> | undefined;
  private readonly lostListeners = new Set<() => void>();

  get(): Promise<JanusSession> {
    if (!this.session) {
      const made = JanusSession.create(() => {
        if (this.session === made) this.session = undefined;
        for (const listener of this.lostListeners) listener();
      });
      this.session = made;
      made.then(
        () => markPage('janus'),
        () => {
          if (this.session === made) this.session = undefined;
        },
      );
    }
    return this.session;
  }

  onLost(listener: () => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  close(): void {
    void this.session?.then(
      (session) => session.close(),
      () => undefined,
    );
    this.session = undefined;
  }
}

/** What the tests and bench:console read: frames decoded per tile. */
export interface TileStats {
  frames: number;
  firstFrameAt: number | undefined;
  playing: boolean;
  reconnects: number;
  /** The receiver's inbound-rtp statistics at the first frame of the latest connection. */
  atFirstFrame: Record<string, unknown> | undefined;
  /** requestVideoFrameCallback's metadata of the latest connection's first two frames. */
  firstFrames: VideoFrameCallbackMetadata[];
  /** The page's DTLS role in the latest connection ('server': Janus is the DTLS client). */
  dtlsRole: string | undefined;
}
export const tileStats = new Map<string, TileStats>();

const STALL_MS = 3000;

function Tile({ device, state, pool }: { device: string; state: CameraStatePayload; pool: JanusPool }) {
  const key = `${device}/${state.camera}`;
  const figure = useRef<HTMLElement>(null);
  const video = useRef<HTMLVideoElement>(null);
  const [visible, setVisible] = useState(false);
  const [phase, setPhase] = useState('waiting');
  const mountpoint = state.mountpoint?.id;

  // Layout effects, not effects: they run as soon as the tile is in the page, where an effect waits
  // for the next frame to be painted (a frame or two more before the first picture).
  useLayoutEffect(() => {
    const element = figure.current;
    if (!element) return;
    // On screen already: start now rather than at the observer's first report (after a frame).
    const box = element.getBoundingClientRect();
    if (box.width > 0 && box.bottom > 0 && box.right > 0 && box.top < innerHeight && box.left < innerWidth)
      setVisible(true);
    const observer = new IntersectionObserver(
      (entries) => setVisible(entries.some((entry) => entry.isIntersecting)),
      {
        threshold: 0.01,
      },
    );
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  useLayoutEffect(() => {
    const element = video.current;
    if (!element || !visible || mountpoint === undefined) {
      setPhase(mountpoint === undefined ? 'no video' : 'paused');
      return;
    }
    const stats: TileStats = tileStats.get(key) ?? {
      frames: 0,
      firstFrameAt: undefined,
      playing: false,
      reconnects: 0,
      atFirstFrame: undefined,
      firstFrames: [],
      dtlsRole: undefined,
    };
    tileStats.set(key, stats);
    let stopped = false;
    let viewer: MountpointViewer | undefined;
    let retry: number | undefined;
    let delay = 250;
    let lastFrameAt = performance.now();
    let frameRequest = 0;
    let framesThisConnection = 0;
    const onFrame = (_now: number, metadata: VideoFrameCallbackMetadata) => {
      stats.frames += 1;
      stats.firstFrameAt ??= performance.now();
      if (framesThisConnection++ === 0) {
        markTile(key, 'frame');
        const current = viewer;
        void current?.videoStats().then((report) => {
          if (current === viewer) stats.atFirstFrame = report;
        });
        void current?.dtlsRole().then((role) => {
          if (current === viewer) stats.dtlsRole = role;
        });
      }
      if (stats.firstFrames.length < 2) stats.firstFrames.push(metadata);
      stats.playing = true;
      lastFrameAt = performance.now();
      delay = 250;
      if (!stopped) frameRequest = element.requestVideoFrameCallback(onFrame);
    };
    frameRequest = element.requestVideoFrameCallback(onFrame);
    const reconnect = (reason: string) => {
      if (stopped) return;
      viewer?.close();
      viewer = undefined;
      stats.playing = false;
      setPhase(`reconnecting: ${reason}`);
      window.clearTimeout(retry);
      retry = window.setTimeout(() => void connect(), delay);
      delay = Math.min(delay * 2, 2000);
    };
    const connect = async () => {
      if (stopped) return;
      setPhase('connecting');
      clearTileMarks(key);
      framesThisConnection = 0;
      stats.firstFrames = [];
      stats.atFirstFrame = undefined;
      markTile(key, 'connect');
      try {
        const session = await pool.get();
        markTile(key, 'session');
        const made = new MountpointViewer({
          session,
          mountpoint,
          video: element,
          onFailed: (reason) => {
            stats.reconnects += 1;
            reconnect(reason);
          },
          onStep: (step) => markTile(key, step),
        });
        viewer = made;
        await made.open();
        lastFrameAt = performance.now();
        if (!stopped) setPhase('playing');
      } catch (error) {
        reconnect((error as Error).message);
      }
    };
    const unlisten = pool.onLost(() => reconnect('Janus session lost'));
    // A picture that stops advancing (Janus restarted under a live PeerConnection, a network drop that
    // ICE has not noticed yet) is a reason to start over.
    const watchdog = window.setInterval(() => {
      if (viewer && performance.now() - lastFrameAt > STALL_MS) {
        stats.reconnects += 1;
        lastFrameAt = performance.now();
        reconnect('no picture for 3 s');
      }
    }, 1000);
    void connect();
    return () => {
      stopped = true;
      stats.playing = false;
      element.cancelVideoFrameCallback(frameRequest);
      window.clearInterval(watchdog);
      window.clearTimeout(retry);
      unlisten();
      viewer?.close();
    };
  }, [visible, mountpoint, pool]);

  const problem = state.state !== 'streaming' ? (state.lastError ?? state.state) : undefined;
  return (
    <figure class={`tile ${state.state}`} ref={figure} data-camera={key}>
      <video
        ref={video}
        muted
        autoplay
        playsInline
        aria-label={`Live video of ${state.camera} on ${device}`}
      />
      <figcaption>
        <span class="name">
          {device} / {state.camera}
        </span>
        <span class={`state ${state.state}`}>{state.state}</span>
        <span class="rates">
          {state.fps === null ? '–' : state.fps.toFixed(0)} fps ·{' '}
          {state.bitrateKbps === null ? '–' : Math.round(state.bitrateKbps)} kbit/s
        </span>
        <button
          type="button"
          class="secondary"
          aria-label={`Full screen: ${device} / ${state.camera}`}
          onClick={() => void figure.current?.requestFullscreen()}
        >
          <svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true">
            <path
              d="M1 6V1h5M10 1h5v5M15 10v5h-5M6 15H1v-5"
              fill="none"
              stroke="currentColor"
              stroke-width="2"
            />
          </svg>
        </button>
        {problem && <span class="problem">{problem}</span>}
        {state.mountpoint?.state === 'missing' && <span class="problem">not on the video server yet</span>}
        <span class="phase" aria-live="off">
          {phase}
        </span>
      </figcaption>
    </figure>
  );
}

export function Live({ site }: { site: Site }) {
  useSite(site);
  const [pool] = useState(() => new JanusPool());
  useLayoutEffect(() => {
    // The Janus session is made while the camera states are still arriving: one round trip saved.
    if (site.session.video) void pool.get().catch(() => undefined);
    return () => pool.close();
  }, [pool]);
  const tiles = [...site.devices.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((device) =>
      [...device.cameras.values()]
        .sort((a, b) => a.camera.localeCompare(b.camera))
        .map((state) => ({ device: device.name, state, online: device.status?.state !== 'offline' })),
    );
  if (!site.session.video)
    return <p class="empty">This site has no Janus video server configured (sfu.mode is not janus).</p>;
  if (tiles.length === 0) return <p class="empty">No camera has reported yet.</p>;
  return (
    <section aria-label="Live cameras" class="grid">
      <h1 class="visually-hidden">Live</h1>
      {tiles.map(({ device, state }) => (
        <Tile key={`${device}/${state.camera}`} device={device} state={state} pool={pool} />
      ))}
    </section>
  );
}
