// The daemon's side of the finite GStreamer jobs, each in a job worker of its own (job-worker.ts): the
// registry probe (which elements exist, and whether a trial pipeline runs) and running a pipeline to
// its end (a clip's mux). A native crash or a leak stays in that process.
import { OutpostError } from '../errors.js';
import { forkWorker } from './fork.js';
import type { FromJobWorker, ProbeCandidate, ProbeResult, ToJobWorker } from './job-protocol.js';

export type { ProbeCandidate, ProbeResult } from './job-protocol.js';

/**
 * Look `candidates` up in GStreamer's registry and run their trial pipelines (the encoder probe), each
 * trial bounded by `trialTimeoutMs`. Rejects with START_FAILED when the worker gives no answer within
 * `timeoutMs` or exits without one.
 */
export function probeRegistry(
  candidates: ProbeCandidate[],
  trialTimeoutMs: number,
  timeoutMs: number,
): Promise<ProbeResult[]> {
  const worker = forkWorker(import.meta.url, 'job-worker');
  return new Promise<ProbeResult[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.kill('SIGKILL');
      reject(
        new OutpostError('START_FAILED', `GStreamer encoder probe did not answer within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    worker.on('message', (message: FromJobWorker) => {
      if (message.type !== 'probed') return;
      clearTimeout(timer);
      resolve(message.results);
    });
    worker.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    worker.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new OutpostError(
          'START_FAILED',
          `GStreamer encoder probe exited early (${signal ?? `code ${code}`})`,
        ),
      );
    });
    worker.send({ type: 'probe', trialTimeoutMs, candidates } satisfies ToJobWorker);
  });
}

/**
 * Run a finite pipeline (a clip's mux) in a worker process of its own, to its end of stream. Resolves
 * undefined when it got there, or the reason it did not; never rejects. Bounded: the worker is killed
 * when it has not answered within `timeoutMs` plus a second.
 */
export function runPipelineToEnd(description: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const worker = forkWorker(import.meta.url, 'job-worker');
    let answered = false;
    let outcome: string | undefined;
    const timer = setTimeout(() => {
      if (!answered) outcome = `no answer within ${timeoutMs + 1000} ms`;
      worker.kill('SIGKILL');
    }, timeoutMs + 1000);
    worker.on('message', (message: FromJobWorker) => {
      if (message.type !== 'ran' || answered) return;
      answered = true;
      outcome = message.error;
    });
    worker.on('error', (error) => {
      outcome ??= `worker process: ${error.message}`;
      // A worker that never started will not close either.
      if (worker.pid === undefined) {
        clearTimeout(timer);
        resolve(outcome);
      }
    });
    // 'close', not 'exit': it comes once the IPC channel is closed too, so an answer sent just before
    // the worker exited has been read (Node emits 'exit' as soon as the process is reaped).
    worker.on('close', (code, signal) => {
      clearTimeout(timer);
      if (!answered) outcome ??= `the worker exited without an answer (${signal ?? `code ${code}`})`;
      resolve(outcome);
    });
    worker.send({ type: 'run-to-end', description, timeoutMs } satisfies ToJobWorker);
  });
}
