// Starting GStreamer processes: a worker (a Node entry point that drives gstreamer-superficial: a
// camera's, camera/worker.ts, or a finite job's, job-worker.ts), and `gst-device-monitor-1.0` for
// `outpost cameras` (gstreamer-superficial has no GstDeviceMonitor). The only module of the daemon that
// imports child_process (besides gpio/gpiod-pin.ts, which runs Debian's gpiod tools).
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tiedToParent } from '../lifecycle/tied-child.js';

/**
 * Fork the worker entry `name` that sits beside the module at `beside` (that module's
 * `import.meta.url`), with IPC.
 */
export function forkWorker(beside: string, name: string): ChildProcess {
  const { path, execArgv } = workerEntry(beside, name);
  // Dies with the daemon, inherits none of its files (lifecycle/tied-child.ts); fd 3 is the IPC channel.
  const tied = tiedToParent(process.execPath, execArgv, 3);
  return fork(path, [], {
    execPath: tied.file,
    execArgv: tied.args,
    // pollBus and each pending pull() hold a libuv worker thread; the default pool of 4 runs out.
    env: { ...process.env, UV_THREADPOOL_SIZE: '8' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/**
 * The worker's entry file. Built JavaScript runs `name.js` beside `beside`; when that module is
 * TypeScript (the test suite runs sources through vitest), the worker runs `name.ts` through tsx.
 */
function workerEntry(beside: string, name: string): { path: string; execArgv: string[] } {
  if (beside.endsWith('.ts')) {
    return {
      path: fileURLToPath(new URL(`./${name}.ts`, beside)),
      execArgv: ['--import', import.meta.resolve('tsx')],
    };
  }
  return { path: fileURLToPath(new URL(`./${name}.js`, beside)), execArgv: [] };
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
