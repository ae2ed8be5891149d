// Stopping a child process: a signal asking it to end, then SIGKILL if it has not exited within the
// grace period. Resolves once it has exited (at once if it already had).
import type { ChildProcess } from 'node:child_process';

export function stopChild(
  child: ChildProcess,
  options: { signal?: NodeJS.Signals; graceMs: number },
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), options.graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(options.signal ?? 'SIGTERM');
  });
}
