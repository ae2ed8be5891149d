// Messages between a camera supervisor and its worker process (Node IPC). Kept in one small module so
// both sides agree on the shape; the parent validates nothing here because it spawned the child itself.

export type ToWorker = { type: 'run'; description: string; payloader: string } | { type: 'stop' };

export type FromWorker =
  /** The pipeline parsed and was asked to play. */
  | { type: 'started' }
  /** Once a second: RTP packets sent so far (the payloader's sequence counter, wrapped). */
  | { type: 'stats'; packets: number }
  | { type: 'error'; message: string; element: string | undefined; debug: string | undefined }
  | { type: 'eos' };
