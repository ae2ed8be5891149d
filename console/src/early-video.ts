// The Live page's video, started with the page (early.ts) instead of after its main code and the
// cameras' retained states over MQTT: one Janus session, and a viewer for every camera of the site
// (the hub's `view` with `mountpoints: "site"`), answered and connecting while main.tsx (Preact,
// MQTT.js, the views) is still loading. A tile that appears for one of these mountpoints adopts its
// viewer (its picture may already be there); a viewer no visible tile takes within a few seconds
// hangs up. Only for a console login opening on Live; nothing is kept.
import { JanusSession, MountpointViewer } from './janus.js';
import { markPage } from './marks.js';

/** A viewer no tile took by then is hung up (the tile is off screen, or the camera went away). */
const UNCLAIMED_MS = 10_000;

let session: Promise<JanusSession> | undefined;
/** The viewers, once the hub answered (undefined before startEarlyVideo). */
let started: Promise<void> | undefined;
const viewers = new Map<number, MountpointViewer>();

export function startEarlyVideo(): void {
  if (session) return;
  const made = JanusSession.create();
  session = made;
  started = made.then(
    async (janus) => {
      markPage('janus');
      const views = await janus.viewSite();
      for (const view of views) {
        const viewer = new MountpointViewer({
          session: janus,
          mountpoint: view.mountpoint,
          video: undefined,
          onFailed: () => undefined,
        });
        viewers.set(view.mountpoint, viewer);
        void viewer.open({ handle: view.handle, offer: view.offer }).catch(() => viewer.close());
      }
      window.setTimeout(() => {
        for (const viewer of viewers.values()) viewer.close();
        viewers.clear();
        // Not taken by a Live page either: hung up too.
        if (session === made) {
          session = undefined;
          janus.close();
        }
      }, UNCLAIMED_MS);
    },
    () => undefined,
  );
  started.catch(() => undefined);
  // A failed early session is not handed on: the page makes its own.
  made.catch(() => {
    if (session === made) session = undefined;
  });
}

/** The Janus session started with the page (once), while it is alive. */
export function takeEarlySession(): Promise<JanusSession> | undefined {
  const taken = session;
  session = undefined;
  return taken;
}

/**
 * The viewer started with the page for `mountpoint` (once), while it is alive; waits for the hub's
 * answer when it is still on its way (sooner than asking again).
 */
export async function takeEarlyViewer(mountpoint: number): Promise<MountpointViewer | undefined> {
  await started?.catch(() => undefined);
  const viewer = viewers.get(mountpoint);
  viewers.delete(mountpoint);
  return viewer?.alive ? viewer : undefined;
}
