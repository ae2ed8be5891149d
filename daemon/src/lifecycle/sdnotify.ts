// systemd's sd_notify protocol (man sd_notify): READY=1 once started, WATCHDOG=1 at half of
// WATCHDOG_USEC while healthy, STATUS= lines, STOPPING=1 on shutdown. A no-op without NOTIFY_SOCKET
// (a developer's terminal), and it soft-fails with a log line: notifying is never worth crashing for.
// Node has no unix datagram sockets, so this uses `unix-dgram` (the addon zigbee2mqtt uses), rather
// than `systemd-notify`, whose messages race the sending process's exit unless NotifyAccess=all.
import type { Logger } from 'pino';

export interface Notifier {
  ready(status: string): void;
  status(status: string): void;
  stopping(status: string): void;
  /** Stop the watchdog timer and close the socket. Idempotent. */
  close(): void;
}

const silent: Notifier = { ready() {}, status() {}, stopping() {}, close() {} };

/**
 * Connect to $NOTIFY_SOCKET. `healthy` is asked before every watchdog ping: when it answers false,
 * the ping is skipped and systemd restarts the service once WatchdogSec runs out.
 */
export async function connectNotifier(
  env: NodeJS.ProcessEnv,
  log: Logger,
  healthy: () => boolean,
): Promise<Notifier> {
  const target = env.NOTIFY_SOCKET;
  if (!target) return silent;
  // An abstract-namespace socket is written with a leading "@" and addressed with a leading NUL.
  const path = target.startsWith('@') ? `\0${target.slice(1)}` : target;
  let socket: import('unix-dgram').UnixDgramSocket;
  try {
    const { createSocket } = await import('unix-dgram');
    socket = createSocket('unix_dgram');
  } catch (error) {
    log.warn({ err: error }, 'sd_notify unavailable: unix-dgram did not load; systemd will not see READY');
    return silent;
  }
  socket.on('error', (error: Error) => log.warn({ err: error }, 'sd_notify socket error'));

  const send = (message: string): void => {
    const buffer = Buffer.from(message);
    socket.send(buffer, 0, buffer.length, path, (error) => {
      if (error) log.warn({ err: error, message }, 'sd_notify send failed');
    });
  };

  let watchdog: NodeJS.Timeout | undefined;
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
  const startWatchdog = (): void => {
    if (!(usec > 0) || !forUs || watchdog) return;
    const intervalMs = Math.max(1, Math.floor(usec / 2000));
    let last = Date.now();
    watchdog = setInterval(() => {
      const now = Date.now();
      // A timer that fires far too late means the event loop was blocked: let systemd see that.
      const lateMs = now - last - intervalMs;
      last = now;
      if (lateMs > intervalMs / 2) log.warn({ lateMs }, 'event loop stalled; watchdog ping skipped');
      else if (!healthy()) log.warn('a subsystem is unhealthy; watchdog ping skipped');
      else send('WATCHDOG=1');
    }, intervalMs);
    log.info({ intervalMs }, 'systemd watchdog pings started');
  };

  let closed = false;
  return {
    ready(status) {
      send(`READY=1\nSTATUS=${status}`);
      startWatchdog();
    },
    status(status) {
      send(`STATUS=${status}`);
    },
    stopping(status) {
      send(`STOPPING=1\nSTATUS=${status}`);
      if (watchdog) clearInterval(watchdog);
    },
    close() {
      if (closed) return;
      closed = true;
      if (watchdog) clearInterval(watchdog);
      socket.close();
    },
  };
}
