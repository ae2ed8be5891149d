// The start/stop contract every subsystem follows, and the one routine that starts a list of them in
// order and stops them in reverse. Constructors only store their arguments; `start()` does the work.
import type { Logger } from 'pino';
import { describeError, OutpostError } from '../errors.js';

export interface Service {
  /** Short name used in logs, STATUS= lines and errors: `broker`, `camera cam0`. */
  readonly name: string;
  /** Acquire resources. Rejects with an error that says what failed and how to fix it. */
  start(): Promise<void>;
  /** Release everything. Idempotent; resolves only when the resources are really gone. */
  stop(): Promise<void>;
  /** Cheap, synchronous: is it doing its job right now? Asked before each watchdog ping. */
  healthy(): boolean;
}

export interface Lifecycle {
  /** Start every service in order; on a failure, stop the ones started and reject naming it. */
  start(): Promise<void>;
  /**
   * Stop started services in reverse order, all within `stopTimeoutMs`. Idempotent.
   * Resolves true when everything stopped in time, false when something was abandoned.
   */
  stop(): Promise<boolean>;
  healthy(): boolean;
}

export function lifecycle(services: readonly Service[], log: Logger, stopTimeoutMs: number): Lifecycle {
  const started: Service[] = [];
  let stopping: Promise<boolean> | undefined;

  const stopAll = async (timeoutMs: number): Promise<boolean> => {
    const deadline = Date.now() + timeoutMs;
    let allStopped = true;
    for (const service of [...started].reverse()) {
      const left = Math.max(0, deadline - Date.now());
      const outcome = await withTimeout(service.stop(), left);
      started.splice(started.indexOf(service), 1);
      if (outcome === 'done') {
        log.info({ subsystem: service.name }, 'stopped');
      } else if (outcome === 'timeout') {
        allStopped = false;
        log.error({ subsystem: service.name, timeoutMs }, 'did not stop in time; abandoned');
      } else {
        allStopped = false;
        log.error({ subsystem: service.name, err: outcome.error }, 'failed to stop cleanly');
      }
    }
    return allStopped;
  };

  return {
    async start() {
      for (const service of services) {
        const began = Date.now();
        try {
          await service.start();
        } catch (error) {
          log.error({ subsystem: service.name, err: error }, 'failed to start');
          await stopAll(stopTimeoutMs);
          throw new OutpostError('START_FAILED', `${service.name} failed to start: ${describeError(error)}`, {
            cause: error,
          });
        }
        started.push(service);
        log.info({ subsystem: service.name, ms: Date.now() - began }, 'started');
      }
    },
    stop() {
      stopping ??= stopAll(stopTimeoutMs);
      return stopping;
    },
    healthy() {
      return started.length === services.length && started.every((service) => service.healthy());
    },
  };
}

type Outcome = 'done' | 'timeout' | { error: unknown };

async function withTimeout(promise: Promise<void>, ms: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([
      promise.then((): Outcome => 'done').catch((error: unknown) => ({ error })),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
