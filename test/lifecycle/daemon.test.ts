// The daemon as a real child process: it starts every subsystem, and SIGTERM/SIGINT stop it cleanly
// and quickly; a subsystem that cannot start is named and the exit status says so.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { daemonConfig, runCli } from '../support/processes.js';

const started = (line: Record<string, unknown>) => line.msg === 'outpost running';

describe('daemon process', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s stops it with exit 0 within 5 s', async (signal) => {
    const { file } = await daemonConfig();
    const daemon = runCli(['run', '--config', file]);
    await daemon.waitForLog(started);
    const began = Date.now();
    daemon.child.kill(signal);
    const { code } = await daemon.exited(5000);
    expect(code).toBe(0);
    expect(Date.now() - began).toBeLessThan(5000);
    expect(daemon.stdout()).toMatch(/"msg":"outpost stopped"/);
  });

  it('logs each subsystem it started', async () => {
    const { file } = await daemonConfig();
    const daemon = runCli(['run', '--config', file]);
    await daemon.waitForLog(started);
    daemon.child.kill('SIGTERM');
    await daemon.exited();
    const startedSubsystems = daemon
      .stdout()
      .split('\n')
      .filter((line) => line.includes('"msg":"started"'))
      .map((line) => (JSON.parse(line) as { subsystem: string }).subsystem);
    expect(startedSubsystems).toEqual([
      'broker',
      'uplink',
      'encoders',
      'preroll',
      'camera cam0',
      'camera state',
      'telemetry',
      'clip-store',
      'clip-delivery',
      'panic',
      'commands',
      'update-report',
    ]);
  });

  it('a broker port already in use: names the subsystem and the reason, exits 3', async () => {
    const { file, brokerPort } = await daemonConfig();
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(brokerPort, '127.0.0.1', resolve));
    try {
      const daemon = runCli(['run', '--config', file]);
      const { code } = await daemon.exited();
      expect(code).toBe(3);
      expect(daemon.stdout()).toMatch(
        /broker failed to start: cannot listen for MQTT \(tcp\) on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/,
      );
    } finally {
      squatter.close();
    }
  });

  it.skipIf(existsSync('/etc/outpost/outpost.yaml'))(
    'without a config file and without --defaults, says how to proceed and exits 2',
    async () => {
      const daemon = runCli(['run']);
      const { code } = await daemon.exited();
      expect(code).toBe(2);
      expect(daemon.stderr()).toMatch(/no config at \/etc\/outpost\/outpost\.yaml.*--defaults/);
    },
  );
});
