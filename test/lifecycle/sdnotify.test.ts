// systemd's side of sd_notify, played by the test: a unix datagram socket bound where NOTIFY_SOCKET
// points. The daemon must say READY=1 once started, WATCHDOG=1 at half of WATCHDOG_USEC, STATUS=
// lines, and STOPPING=1 when asked to stop.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { daemonConfig, runCli, tempDir, until } from '../support/processes.js';

const { createSocket } = createRequire(import.meta.url)('unix-dgram') as typeof import('unix-dgram');

interface Received {
  at: number;
  text: string;
}

async function listen(path: string) {
  const received: Received[] = [];
  const socket = createSocket('unix_dgram', (message) =>
    received.push({ at: Date.now(), text: message.toString() }),
  );
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('listening', resolve);
    socket.once('error', reject);
    socket.bind(path);
  });
  return { received, close: () => socket.close() };
}

describe('sd_notify', () => {
  it('sends READY, periodic WATCHDOG at half of WATCHDOG_USEC, STATUS, then STOPPING', async () => {
    const socketPath = join(await tempDir(), 'notify.sock');
    const systemd = await listen(socketPath);
    const { file } = await daemonConfig();
    const daemon = runCli(['run', '--config', file], { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '600000' });
    try {
      const texts = () => systemd.received.map((r) => r.text);
      await until(() => texts().some((t) => t.startsWith('READY=1')), 20_000, 'READY=1');
      const readyAt = systemd.received.find((r) => r.text.startsWith('READY=1'))?.at ?? 0;
      await until(
        () => systemd.received.filter((r) => r.text === 'WATCHDOG=1').length >= 4,
        10_000,
        'four WATCHDOG=1',
      );

      daemon.child.kill('SIGTERM');
      expect((await daemon.exited()).code).toBe(0);

      expect(texts()[0]).toBe('STATUS=starting');
      expect(texts().find((t) => t.startsWith('READY=1'))).toMatch(
        /^READY=1\nSTATUS=broker on 127\.0\.0\.1:\d+/,
      );
      const pings = systemd.received.filter((r) => r.text === 'WATCHDOG=1').map((r) => r.at);
      expect(pings[0]).toBeGreaterThanOrEqual(readyAt);
      // Half of 600 ms is 300 ms. Every gap stays well inside the 600 ms systemd would allow, with
      // room for a busy 2-core machine; the mean shows the pings are paced, not bunched.
      const gaps = pings.slice(1).map((at, i) => at - (pings[i] ?? at));
      expect(Math.max(...gaps)).toBeLessThan(550);
      const mean = gaps.reduce((sum, gap) => sum + gap, 0) / gaps.length;
      expect(mean).toBeGreaterThan(250);
      expect(mean).toBeLessThan(400);
      expect(texts().at(-1)).toMatch(/^STOPPING=1/);
    } finally {
      daemon.child.kill('SIGKILL');
      systemd.close();
    }
  });

  it('without NOTIFY_SOCKET it runs and stops the same, silently', async () => {
    const { file } = await daemonConfig();
    const daemon = runCli(['run', '--config', file], { NOTIFY_SOCKET: '' });
    await daemon.waitForLog((line) => line.msg === 'outpost running');
    daemon.child.kill('SIGTERM');
    expect((await daemon.exited()).code).toBe(0);
    expect(daemon.stdout()).not.toMatch(/sd_notify/);
  });
});
