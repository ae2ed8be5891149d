// The updater's one door to other programs (rauc, the boot backend, systemctl, mount): each run is
// bounded in time, its output kept, and lines handed on as they come (RAUC's progress).
import { spawn } from 'node:child_process';

export interface RunResult {
  /** Exit status; null when killed (the timeout, or a signal). */
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** Each line of stdout and stderr, as it comes. */
  onLine?: (line: string) => void;
}

export function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let partial = '';
    const lines = (chunk: Buffer): void => {
      if (!options.onLine) return;
      const text = partial + chunk.toString('utf8');
      const parts = text.split(/\r?\n|\r/);
      partial = parts.pop() ?? '';
      for (const line of parts) if (line.trim()) options.onLine(line);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      out.push(chunk);
      lines(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err.push(chunk);
      lines(chunk);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ status: null, stdout: '', stderr: `${command}: ${error.message}` });
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({
        status,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}
