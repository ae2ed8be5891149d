import { describe, expect, it } from 'vitest';
import { REPO, runCliToEnd } from './support/processes.js';

const fixture = (name: string) => `${REPO}/test/fixtures/${name}`;

describe('outpost CLI', () => {
  it('check-config on a file with three mistakes prints three problems and exits 2', async () => {
    const { code, stderr, stdout } = await runCliToEnd(['check-config', fixture('three-mistakes.yaml')]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const lines = stderr.trim().split('\n');
    expect(lines[0]).toMatch(/three-mistakes\.yaml: 3 problems$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}line 3: brokr = .*unknown key; did you mean "broker"\?$/),
      expect.stringMatching(/^ {2}line 9: cameras\[0\]\.name: required key is missing$/),
      expect.stringMatching(/^ {2}line 12: cameras\[0\]\.rtp\.port = 70000: a port is 1–65535$/),
    ]);
  });

  it('check-config on a good file prints the effective config and exits 0', async () => {
    const { code, stdout } = await runCliToEnd(['check-config', fixture('good.yaml')]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/OK\. Effective configuration/);
    expect(stdout).toMatch(/name: yard\n\s+source:\n\s+type: test/);
  });

  it('check-config names a missing file and exits 2', async () => {
    const { code, stderr } = await runCliToEnd(['check-config', '/nonexistent.yaml']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/config file \/nonexistent\.yaml does not exist/);
  });

  it('version prints the package version', async () => {
    const { code, stdout } = await runCliToEnd(['version']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^outpost \d+\.\d+\.\d+\n$/);
  });

  it.each([['run'], ['check-config'], ['version']])(
    '%s --help describes the command and exits 0',
    async (command) => {
      const { code, stdout } = await runCliToEnd([command, '--help']);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`Usage: outpost ${command}`));
    },
  );

  it('an unknown command or option is a usage error, exit 2', async () => {
    expect((await runCliToEnd(['frobnicate'])).code).toBe(2);
    expect((await runCliToEnd(['run', '--no-such-flag'])).code).toBe(2);
  });

  it('run with a bad config reports the problems and exits 2 before starting anything', async () => {
    const { code, stderr, stdout } = await runCliToEnd(['run', '--config', fixture('three-mistakes.yaml')]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/3 problems/);
    expect(stdout).not.toMatch(/started/);
  });
});
