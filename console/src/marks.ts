// Timing marks for the steps from opening the page to each tile's first decoded frame, as standard
// User Timing marks (performance.mark): bench:console reads them to say where the time goes
// (docs/console.md, Figures), and a browser's performance panel shows them beside the network.
// A tile clears its own marks when it connects again, so a page left open for weeks keeps one set per
// tile; the page's own marks are made once.

/** The page's steps, once per page load. */
export type PageStep =
  | 'start' // the page's first code (boot.ts) runs
  | 'boot' // the rest of the page's code runs (main.tsx, every module evaluated)
  | 'session' // who is logged in (/api/session)
  | 'mqtt' // MQTT connected (CONNACK)
  | 'cameras' // the first retained camera state
  | 'janus'; // the page's Janus session made

/** A tile's steps, in the order they happen, once per connection. */
export const TILE_STEPS = [
  'connect', // on screen, with a mountpoint: starts connecting
  'session', // the page's Janus session is there
  'offer', // the hub's `view` answered: a handle watching the mountpoint, and Janus's offer
  'answered', // answer made (setLocalDescription)
  'started', // `start` (with the answer) acknowledged
  'ice', // ICE connected
  'dtls', // DTLS done (connectionState connected)
  'rtp', // first RTP packet (the track unmuted)
  'frame', // first decoded frame (requestVideoFrameCallback)
] as const;
export type TileStep = (typeof TILE_STEPS)[number];

const made = new Set<string>();

export function markPage(step: PageStep): void {
  const name = `outpost ${step}`;
  if (made.has(name)) return;
  made.add(name);
  performance.mark(name);
}

export function markTile(tile: string, step: TileStep): void {
  const name = `tile ${tile} ${step}`;
  if (made.has(name)) return;
  made.add(name);
  performance.mark(name);
}

/** A new connection of the tile: its marks start over. */
export function clearTileMarks(tile: string): void {
  for (const step of TILE_STEPS) {
    const name = `tile ${tile} ${step}`;
    made.delete(name);
    performance.clearMarks(name);
  }
}
