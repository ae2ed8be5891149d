// What the page starts before the rest of its code is loaded (boot.ts runs this first): it asks who is
// logged in and, for a logged-in page, opens the MQTT WebSocket to the hub (TLS and the upgrade) while
// main.tsx (Preact, MQTT.js, the views) is still being fetched and evaluated, instead of after it.
// api.ts and site.ts take them once; nothing else is started here, and nothing is kept.
import { markPage } from './marks.js';

markPage('start');

const token = /^#login=([A-Za-z0-9_-]+)$/.exec(location.hash)?.[1];
let session: Promise<Response> | undefined = token
  ? undefined
  : fetch('/api/session', { credentials: 'same-origin' });
let socket: WebSocket | undefined;

void session?.then(
  (response) => {
    if (!response.ok) return;
    socket = new WebSocket(`wss://${location.host}/mqtt`, ['mqtt']);
    socket.binaryType = 'arraybuffer';
    // Not taken (the page went elsewhere): not left open.
    const made = socket;
    window.setTimeout(() => {
      if (socket === made) {
        socket = undefined;
        made.close();
      }
    }, 10_000);
  },
  () => undefined,
);

/** The answer to /api/session asked for at start (once; undefined after, or with a #login= link). */
export function takeSessionResponse(): Promise<Response> | undefined {
  const taken = session;
  session = undefined;
  return taken;
}

/** The MQTT WebSocket opened at start, while it is still usable (once). */
export function takeSocket(): WebSocket | undefined {
  const taken = socket;
  socket = undefined;
  if (taken && taken.readyState !== WebSocket.CONNECTING && taken.readyState !== WebSocket.OPEN)
    return undefined;
  return taken;
}
