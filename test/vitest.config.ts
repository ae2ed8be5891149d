import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['test/**/*.test.ts'],
    // Tests start real processes (daemons, GStreamer, brokers, Janus, Chromium); give them room on a
    // 2-core CI box. One file at a time: two files at once (each with its own daemons, cameras and
    // browsers) left a camera worker or gst-launch waiting seconds for a core, and timing-bound tests
    // failed by turns. The suite takes about twice as long in wall time.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
