// The units must verify without a single warning (systemd-analyze exits 0 even on unknown keys, so
// the output is what counts) and keep the sandbox score low; the journald drop-in uses only keys the
// installed journald knows.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/processes.js';

const unit = `${REPO}/systemd/outpost.service`;
const firstboot = `${REPO}/systemd/outpost-firstboot.service`;
const journald = `${REPO}/systemd/journald-outpost.conf`;

function securityScore(file: string, name: string): number {
  const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', file], {
    encoding: 'utf8',
  });
  const match = new RegExp(`Overall exposure level for ${name.replace('.', '\\.')}: ([\\d.]+) (\\w+)`).exec(
    result.stdout,
  );
  expect(match, result.stdout + result.stderr).not.toBeNull();
  const score = Number(match![1]);
  process.stdout.write(`systemd-analyze security ${name}: ${score} ${match![2]}\n`);
  return score;
}

/** `systemd-analyze verify` exits 0 on unknown keys: the output must be empty too. */
function expectVerifiesCleanly(file: string): void {
  const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  expect(result.status).toBe(0);
  expect(`${result.stdout}${result.stderr}`.trim()).toBe('');
}

// outpost-firstboot.service writes /etc and the boot partition, hence its own bound.
describe.each([
  { file: unit, name: 'outpost.service', exposure: 2.5 },
  { file: firstboot, name: 'outpost-firstboot.service', exposure: 2.0 },
])('$name', ({ file, name, exposure }) => {
  it('verifies with no warnings', () => expectVerifiesCleanly(file));

  it(`is sandboxed: exposure ${exposure} or lower`, () => {
    expect(securityScore(file, name)).toBeLessThanOrEqual(exposure);
  });
});

describe('systemd units', () => {
  it('is Type=notify, started with node (never npm), and not restarted on a config error', () => {
    const text = readFileSync(unit, 'utf8');
    expect(text).toMatch(/^Type=notify$/m);
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/node .*cli\.js run /m);
    expect(text).toMatch(/^RestartPreventExitStatus=2$/m);
    expect(text).toMatch(/^WatchdogSec=\d+/m);
  });

  it("outpost.service's syscall filter lets setpriv tie a child to the daemon (capset, prctl)", () => {
    // setpriv --pdeathsig (lifecycle/tied-child.ts) always applies its capability sets: without
    // capset it exits 127 and no camera worker, probe or mux can start (seen on the twin).
    const groups = new Map<string, string[]>();
    const expand = (item: string): string[] => {
      if (!item.startsWith('@')) return [item];
      let members = groups.get(item);
      if (!members) {
        const out = spawnSync('systemd-analyze', ['syscall-filter', item], { encoding: 'utf8' }).stdout;
        members = out
          .split('\n')
          .slice(1)
          .map((line) => line.trim())
          .filter((line) => line && !line.startsWith('#'));
        groups.set(item, members);
      }
      return members.flatMap(expand);
    };
    const lines = [...readFileSync(unit, 'utf8').matchAll(/^SystemCallFilter=(.*)$/gm)].map(
      (m) => m[1] ?? '',
    );
    expect(lines[0]?.startsWith('~'), 'the first SystemCallFilter= is an allow list').toBe(false);
    const allowed = new Set<string>();
    for (const line of lines) {
      const deny = line.startsWith('~');
      for (const call of line.replace(/^~/, '').split(/\s+/).filter(Boolean).flatMap(expand)) {
        if (deny) allowed.delete(call);
        else allowed.add(call);
      }
    }
    expect(allowed.has('prctl')).toBe(true);
    expect(allowed.has('capset')).toBe(true);
    expect(allowed.has('mount')).toBe(false);
  });

  it('outpost.service waits for the network to be configured, not "online" (there is no internet)', () => {
    const text = readFileSync(unit, 'utf8');
    expect(text).toMatch(/^After=.*\bnetwork\.target\b/m);
    expect(text).toMatch(/^After=.*\boutpost-firstboot\.service\b/m);
    expect(text).not.toMatch(/network-online/);
  });
});

describe('outpost-firstboot.service', () => {
  it('is a oneshot before the daemon, runs only with a bundle present, and runs the firstboot verb', () => {
    const text = readFileSync(firstboot, 'utf8');
    expect(text).toMatch(/^Type=oneshot$/m);
    // chronyd reads the role's time settings (written by first boot) only when it starts.
    expect(text).toMatch(/^Before=outpost\.service chrony\.service$/m);
    expect(text).toMatch(/^ConditionPathExists=\/boot\/firmware\/outpost-bundle\.json$/m);
    expect(text).toMatch(
      /^ExecStart=\/usr\/bin\/node \/usr\/lib\/outpost\/dist\/provisioning\/src\/cli\.js firstboot$/m,
    );
    // /data/etc: the image keeps /etc/outpost on the data partition ("-": absent elsewhere).
    expect(text).toMatch(/^ReadWritePaths=\/etc \/boot\/firmware -\/data\/etc$/m);
  });
});

describe('journald drop-in', () => {
  it('keeps the journal in capped RAM, rate-limited, with keys journald knows', () => {
    const text = readFileSync(journald, 'utf8');
    const keys = [...text.matchAll(/^(\w+)=/gm)].map((m) => m[1]!);
    // journald's own config parser table (gperf) names every key it accepts as "Journal.KEY".
    const binary = readFileSync('/lib/systemd/systemd-journald').toString('latin1');
    const known = new Set([...binary.matchAll(/Journal\.(\w+)/g)].map((m) => m[1]!));
    expect(known.size).toBeGreaterThan(20);
    expect(keys.filter((key) => !known.has(key))).toEqual([]);
    expect(text).toMatch(/^\[Journal\]$/m);
    expect(text).toMatch(/^Storage=volatile$/m);
    expect(text).toMatch(/^RuntimeMaxUse=\d+M$/m);
    expect(text).toMatch(/^RateLimitBurst=\d+$/m);
  });
});
