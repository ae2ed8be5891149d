// Starting GStreamer processes: a camera's worker (worker.ts), and `gst-device-monitor-1.0` for
// `outpost cameras` (gstreamer-superficial has no GstDeviceMonitor). The only module that imports
// child_process.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export function forkWorker(): ChildProcess {
  const { path, execArgv } = workerEntry();
  return fork(path, [], {
    execArgv,
    // pollBus and each pending pull() hold a libuv worker thread; the default pool of 4 runs out.
    env: { ...process.env, UV_THREADPOOL_SIZE: '8' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/**
 * The worker's entry file. Built JavaScript runs `worker.js` beside this file; when this module is
 * TypeScript (the test suite runs sources through vitest), the worker runs through tsx the same way.
 */
function workerEntry(): { path: string; execArgv: string[] } {
  if (import.meta.url.endsWith('.ts')) {
    return {
      path: fileURLToPath(new URL('./worker.ts', import.meta.url)),
      execArgv: ['--import', import.meta.resolve('tsx')],
    };
  }
  return { path: fileURLToPath(new URL('./worker.js', import.meta.url)), execArgv: [] };
}

export interface DeviceMonitorOutput {
  stdout: string;
  stderr: string;
  /** Why it did not run to a clean exit (ENOENT, a timeout, an exit status), or undefined. */
  failure: string | undefined;
}

/**
 * Run `gst-device-monitor-1.0 Video/Source` once (it lists what its providers find, then exits).
 * Bounded by `timeoutMs`: a device provider that hangs must not hang the command.
 */
export function runDeviceMonitor(timeoutMs: number): Promise<DeviceMonitorOutput> {
  return new Promise((resolve) => {
    execFile(
      'gst-device-monitor-1.0',
      ['Video/Source'],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        let failure: string | undefined;
        if (error) {
          const code = (error as NodeJS.ErrnoException).code;
          failure =
            code === 'ENOENT'
              ? 'gst-device-monitor-1.0 is not installed'
              : error.killed
                ? `gst-device-monitor-1.0 did not finish within ${timeoutMs} ms`
                : `gst-device-monitor-1.0 failed: ${stderr.trim() || error.message}`;
        }
        resolve({ stdout, stderr, failure });
      },
    );
  });
}
