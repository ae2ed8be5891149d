// The units must verify without a single warning (systemd-analyze exits 0 even on unknown keys, so
// the output is what counts) and keep the sandbox score at "OK" or better.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/processes.js';

const unit = `${REPO}/systemd/outpost.service`;

describe('systemd units', () => {
  it('outpost.service verifies with no warnings', () => {
    const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(`${result.stdout}${result.stderr}`.trim()).toBe('');
  });

  it('outpost.service is sandboxed: exposure 2.5 or lower', () => {
    const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', unit], {
      encoding: 'utf8',
    });
    const match = /Overall exposure level for outpost\.service: ([\d.]+) (\w+)/.exec(result.stdout);
    expect(match, result.stdout + result.stderr).not.toBeNull();
    const score = Number(match![1]);
    process.stdout.write(`systemd-analyze security outpost.service: ${score} ${match![2]}\n`);
    expect(score).toBeLessThanOrEqual(2.5);
  });

  it('is Type=notify, started with node (never npm), and not restarted on a config error', () => {
    const text = readFileSync(unit, 'utf8');
    expect(text).toMatch(/^Type=notify$/m);
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/node .*cli\.js run /m);
    expect(text).toMatch(/^RestartPreventExitStatus=2$/m);
    expect(text).toMatch(/^WatchdogSec=\d+/m);
  });
});
