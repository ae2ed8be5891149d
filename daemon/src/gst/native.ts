// The one loader of gstreamer-superficial, for the worker processes (camera/worker.ts, job-worker.ts):
// the daemon's main process never loads it (it leaks ~1.7 MB per Pipeline and holds a libuv thread per
// pollBus; docs/architecture.md, "Why one process per camera").
import { createRequire } from 'node:module';

export type { Pipeline } from 'gstreamer-superficial';

// The package's entry point is the .node addon itself, which only require() can load.
export const gstreamer = createRequire(import.meta.url)(
  'gstreamer-superficial',
) as typeof import('gstreamer-superficial');
