// A box configured with a button but without usable GPIO says why, with the fix, and keeps running:
// cameras and `cmd/clip` do not depend on the button.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { daemonConfig, runCli } from '../support/processes.js';

const hasGpio = existsSync('/sys/class/gpio') || existsSync('/dev/gpiochip0');

describe('daemon with a button configured', () => {
  it.skipIf(hasGpio)(
    'without any GPIO interface logs the reason and the paths, and keeps running',
    async () => {
      const { file } = await daemonConfig('gpio:\n  button:\n    pin: 17\n');
      const daemon = runCli(['run', '--config', file]);
      try {
        const line = await daemon.waitForLog(
          (l) => typeof l.msg === 'string' && l.msg.startsWith('panic button unavailable'),
        );
        expect(line.reason).toMatch(/no GPIO interface: neither \/sys\/class\/gpio nor \/dev\/gpiochip\*/);
        await daemon.waitForLog((l) => l.msg === 'started' && l.subsystem === 'commands');
        expect(daemon.child.exitCode).toBeNull();
      } finally {
        daemon.child.kill('SIGTERM');
        await daemon.exited();
      }
    },
  );
});
