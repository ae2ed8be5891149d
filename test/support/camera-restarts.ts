// A camera supervisor alone in a process, restarting its worker N times: an RTSP camera whose server
// is not there fails at once in every worker (rtspsrc: connection refused), and a 5 ms backoff makes
// the next attempt follow. Run from the built tree (node dist/test/support/camera-restarts.js N PORT)
// so that workers are plain node, not tsx. Prints one JSON line: this process's RSS after warm-up and
// at the end, the most worker processes alive at once, and how many are left after stop().
import { readdirSync, readFileSync } from 'node:fs';
import pino from 'pino';
import { Camera } from '../../daemon/src/camera/camera.js';
import { Encoders } from '../../daemon/src/camera/encoders.js';
import { configSchema } from '../../daemon/src/config/schema.js';

const restarts = Number(process.argv[2] ?? 100);
const closedPort = Number(process.argv[3]);
/** V8 grows its heap spaces over the first restarts; measure from here. */
const WARM_UP = 30;

function rssMb(): number {
  const match = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

/** Live (not zombie) children of this process. */
function children(): number {
  let count = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') count += 1;
    } catch {
      // exited while we looked
    }
  }
  return count;
}

function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

const log = pino({ level: 'silent' });
const encoders = new Encoders(log);
await encoders.start();
// The probe's worker exits just after it answers: let it go before counting this camera's workers.
for (let waited = 0; children() > 0; waited += 10) {
  if (waited > 5000) throw new Error('the encoder probe worker did not exit within 5 s');
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const config = configSchema.parse({
  cameras: [{ name: 'flaky', source: { type: 'rtsp', url: `rtsp://127.0.0.1:${closedPort}/cam` } }],
});
const camera = new Camera({
  camera: config.cameras[0]!,
  sfu: config.sfu,
  encoders,
  log,
  timings: {
    stallMs: 5000,
    backoffMinMs: 5,
    backoffMaxMs: 5,
    exitGraceMs: 1000,
  },
});

const started = Date.now();
let maxWorkers = 0;
let rssAfterWarmUp = 0;
let heapAfterWarmUp = 0;
await camera.start();
await new Promise<void>((resolve, reject) => {
  const deadline = setTimeout(
    () => reject(new Error(`only ${camera.status().restarts} restarts in 120 s`)),
    120_000,
  );
  let seen = -1;
  const poll = setInterval(() => {
    maxWorkers = Math.max(maxWorkers, children());
    const now = camera.status().restarts;
    if (now === seen) return;
    seen = now;
    if (now === WARM_UP) {
      collect();
      rssAfterWarmUp = rssMb();
      heapAfterWarmUp = process.memoryUsage().heapUsed / 2 ** 20;
    }
    if (now >= restarts) {
      clearInterval(poll);
      clearTimeout(deadline);
      resolve();
    }
  }, 5);
});
await camera.stop();
collect();
const rssAtEnd = rssMb();
process.stdout.write(
  `${JSON.stringify({
    restarts: camera.status().restarts,
    lastError: camera.status().lastError,
    seconds: (Date.now() - started) / 1000,
    rssAfterWarmUpMb: Math.round(rssAfterWarmUp * 10) / 10,
    rssAtEndMb: Math.round(rssAtEnd * 10) / 10,
    heapUsedAfterWarmUpMb: Math.round(heapAfterWarmUp * 10) / 10,
    heapUsedAtEndMb: Math.round((process.memoryUsage().heapUsed / 2 ** 20) * 10) / 10,
    maxWorkersAtOnce: maxWorkers,
    workersLeft: children(),
  })}\n`,
);
