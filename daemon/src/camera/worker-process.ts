// Starting GStreamer processes: a camera's worker (worker.ts), and `gst-device-monitor-1.0` for
// `outpost cameras` (gstreamer-superficial has no GstDeviceMonitor). The only module that imports
// child_process.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tiedToParent } from '../lifecycle/tied-child.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

export function forkWorker(): ChildProcess {
  const { path, execArgv } = workerEntry();
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
 * Run a finite pipeline (a clip's mux) in a worker process of its own, to its end of stream. Resolves
 * undefined when it got there, or the reason it did not; never rejects. Bounded: the worker is killed
 * when it has not answered within `timeoutMs` plus a second.
 */
export function runPipelineToEnd(description: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const worker = forkWorker();
    let outcome: string | undefined = 'the worker exited without an answer';
    const timer = setTimeout(() => {
      outcome = `no answer within ${timeoutMs + 1000} ms`;
      worker.kill('SIGKILL');
    }, timeoutMs + 1000);
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'ran') outcome = message.error;
    });
    worker.on('error', (error) => (outcome = `worker process: ${error.message}`));
    worker.on('exit', () => {
      clearTimeout(timer);
      resolve(outcome);
    });
    worker.send({ type: 'run-to-end', description, timeoutMs } satisfies ToWorker);
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
