// The one logger: pino, JSON lines on stdout (journald keeps them), pretty-printed when a person is
// watching a terminal. Every log line is an event with fields, never a built-up string.
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(level: string, pretty: boolean = process.stdout.isTTY === true): Logger {
  if (pretty) {
    return pino({
      level,
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  // journald stamps time and host itself; keep lines short and machine-readable.
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}
