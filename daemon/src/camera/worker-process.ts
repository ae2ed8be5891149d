// Starting a GStreamer worker process (worker.ts): the only module that imports child_process.
import { fork, type ChildProcess } from 'node:child_process';
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
