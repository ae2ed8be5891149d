// Child-process entry for one finite GStreamer job (jobs.ts starts it): look elements up in the registry
// and try trial pipelines (the encoder probe), or run a pipeline to its end (a clip's mux). It answers
// once and exits, so the ~1.7 MB gstreamer-superficial leaks per Pipeline go back to the kernel.
import { gstreamer, type Pipeline } from './native.js';
import type { FromJobWorker, ProbeCandidate, ProbeResult, ToJobWorker } from './job-protocol.js';

function answer(message: FromJobWorker): void {
  // Exit only once the answer is on its way: process.send is asynchronous.
  process.send?.(message, undefined, {}, () => process.exit(0));
}

/**
 * Which elements exist, and whether each trial pipeline runs to its end: a hardware encoder can be
 * registered yet unusable (no /dev/video11, a driver that refuses the caps), so it must be tried.
 */
async function probe(candidates: ProbeCandidate[], trialTimeoutMs: number): Promise<ProbeResult[]> {
  const results: ProbeResult[] = [];
  for (const { factory, parse, trial } of candidates) {
    try {
      // Parsing resolves every element by name; linking and negotiation wait for play().
      new gstreamer.Pipeline(parse ?? `fakesrc num-buffers=0 ! ${factory} ! fakesink`);
    } catch (error) {
      results.push({ factory, present: false, trialOk: undefined, error: (error as Error).message });
      continue;
    }
    if (trial === undefined) {
      results.push({ factory, present: true, trialOk: undefined, error: undefined });
      continue;
    }
    const error = await runToEnd(trial, trialTimeoutMs);
    results.push({ factory, present: true, trialOk: error === undefined, error });
  }
  return results;
}

/** Run a finite pipeline; resolves undefined at EOS, or the reason it did not get there. */
function runToEnd(description: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let trial: Pipeline;
    try {
      trial = new gstreamer.Pipeline(description);
    } catch (error) {
      resolve((error as Error).message);
      return;
    }
    const finish = (outcome: string | undefined): void => {
      clearTimeout(timer);
      trial.stop();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish(`no end of stream within ${timeoutMs} ms`), timeoutMs);
    trial.pollBus((message) => {
      if (message.type === 'eos') finish(undefined);
      else if (message.type === 'error')
        finish(typeof message.message === 'string' ? message.message : 'error');
    });
    trial.play();
  });
}

process.on('message', (message: ToJobWorker) => {
  switch (message.type) {
    case 'probe':
      void probe(message.candidates, message.trialTimeoutMs).then((results) =>
        answer({ type: 'probed', results }),
      );
      break;
    case 'run-to-end':
      void runToEnd(message.description, message.timeoutMs).then((error) => answer({ type: 'ran', error }));
      break;
  }
});
// The daemon owns shutdown: a Ctrl-C in the terminal reaches the whole process group, and a job is
// short. If the daemon dies (kill -9), the IPC channel closes: do not outlive it.
process.on('SIGINT', () => {});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
