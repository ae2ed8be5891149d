// Installing a bundle, with Debian's RAUC 1.8 on file-backed slots (test/support/rauc.ts): every
// refusal the issue names happens before a byte of the idle slot or the boot partition is written, with
// its own message and exit status; a good bundle lands in the idle slot with its kernel on the boot
// partition and a boot entry on trial; --allow-older lets an older one through.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, truncate, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliToEnd } from '../support/processes.js';
import { raucBox, raucUnavailable, sha256Of, type RaucBox } from '../support/rauc.js';

const unavailable = raucUnavailable();

/** Everything an install could write: the idle slot, the boot partition's files and entries. */
function snapshot(box: RaucBox): string {
  const esp = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory()
        ? esp(join(dir, entry.name))
        : [`${join(dir, entry.name)}:${sha256Of(join(dir, entry.name))}`],
    );
  return [sha256Of(box.slot('B')), sha256Of(box.slot('A')), ...esp(box.esp).sort()].join('\n');
}

describe.skipIf(unavailable !== undefined)('update install (RAUC on file slots)', () => {
  let box: RaucBox;
  let good: string;
  beforeAll(async () => {
    box = await raucBox('1.0.0');
    good = box.bundle('good', { version: '2.0.0' });
  }, 120_000);
  afterAll(async () => {
    await box?.close();
  });

  const install = (bundle: string, ...flags: string[]) =>
    runCliToEnd(['update', 'install', bundle, '--no-reboot', ...flags], box.env);

  // [what, make the bundle, exit status, the problem named, the fix named]
  const refusals: Array<[string, () => Promise<string>, number, RegExp, RegExp]> = [
    [
      'tampered with (one byte changed)',
      async () => {
        const file = join(box.dir, 'tampered.raucb');
        await copyFile(good, file);
        const bytes = readFileSync(file);
        // Inside the squashfs payload (the signature follows it at the end).
        bytes[200] = (bytes[200] ?? 0) ^ 0xff;
        writeFileSync(file, bytes);
        return file;
      },
      21,
      /changed or damaged after it was signed: its signature does not match its content/,
      /copy the bundle again from the release, and compare its sha256/,
    ],
    [
      'truncated (a copy cut short)',
      async () => {
        const file = join(box.dir, 'truncated.raucb');
        await copyFile(good, file);
        await truncate(file, Math.floor(readFileSync(good).length / 2));
        return file;
      },
      20,
      /is incomplete: truncated or damaged at its end/,
      /copy the bundle again and compare its sha256/,
    ],
    [
      'not a bundle at all',
      () => Promise.resolve(join(box.dir, 'system.conf')),
      20,
      /is not an Outpost update bundle/,
      /use a \.raucb file made by image-build\/build\.sh --bundle/,
    ],
    [
      'signed by another key',
      () => Promise.resolve(box.bundle('other-key', { version: '2.0.0', key: box.otherKey })),
      22,
      /is signed by a key this box does not trust/,
      /install only bundles signed with your update key; this image's keyring is \/etc\/rauc\/keyring\.pem/,
    ],
    [
      'for another arch',
      () => Promise.resolve(box.bundle('arm64', { version: '2.0.0', compatible: 'outpost-arm64-rpi' })),
      23,
      /is for arm64 \(outpost-arm64-rpi\); this box is amd64 \(outpost-amd64-efi\)/,
      /build the bundle with image-build\/build\.sh --arch amd64 --bundle/,
    ],
    [
      'for another boot method of the same arch',
      () => Promise.resolve(box.bundle('amd64-rpi', { version: '2.0.0', compatible: 'outpost-amd64-rpi' })),
      24,
      /is for outpost-amd64-rpi; this box is outpost-amd64-efi/,
      /use the bundle made for outpost-amd64-efi/,
    ],
    [
      'older than what runs',
      () => Promise.resolve(box.bundle('older', { version: '0.9.0' })),
      25,
      /is version 0\.9\.0, older than the running 1\.0\.0/,
      /to install it anyway \(going back to an older release\), add --allow-older/,
    ],
    [
      'the version that runs',
      () => Promise.resolve(box.bundle('same', { version: '1.0.0' })),
      25,
      /is version 1\.0\.0, the version running now: nothing to update/,
      /add --allow-older/,
    ],
  ];

  it.each(refusals)(
    'refuses a bundle %s before writing anything',
    async (_what, make, status, message, fix) => {
      const bundle = await make();
      const before = snapshot(box);
      const result = await install(bundle);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toMatch(fix);
      expect(result.code, result.stderr).toBe(status);
      expect(snapshot(box)).toBe(before);
      const state = JSON.parse(await readFile(join(box.paths.updateDir, 'state.json'), 'utf8')) as {
        phase: string;
        code: string;
      };
      expect(state.phase).toBe('refused');
      // `outpost update check` (nothing written, ever) gives the same answer.
      const checked = await runCliToEnd(['update', 'check', bundle], box.env);
      expect(checked.stderr).toMatch(message);
      expect(checked.code, checked.stderr).toBe(status);
    },
  );

  it("refuses an older bundle in RAUC's own hook too (rauc install run by hand)", async () => {
    const older = box.bundle('older-by-hand', { version: '0.8.0' });
    const before = snapshot(box);
    const { spawnSync } = await import('node:child_process');
    const result = spawnSync('rauc', ['install', older], { env: box.env, encoding: 'utf8' });
    expect(result.status).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/older than the running 1\.0\.0/);
    expect(snapshot(box)).toBe(before);
  });

  it('installs a good bundle into the idle slot B, its kernel on the boot partition, on trial', async () => {
    const before = sha256Of(box.slot('B'));
    const result = await install(good);
    expect(result.code, result.stderr).toBe(0);
    expect(sha256Of(box.slot('B'))).not.toBe(before);
    expect(readFileSync(join(box.esp, 'slot-b/vmlinuz'), 'utf8')).toBe('kernel-2.0.0\n');
    expect(readFileSync(join(box.esp, 'slot-b/release'), 'utf8')).toMatch(/^VERSION=2\.0\.0$/m);
    const entries = readdirSync(join(box.esp, 'loader/entries')).sort();
    // Slot A stays committed; slot B is the newest entry, with one try (systemd-boot's boot counting).
    expect(entries).toEqual(['outpost-1-a.conf', 'outpost-2-b+1.conf']);
    expect(readFileSync(join(box.esp, 'loader/entries/outpost-2-b+1.conf'), 'utf8')).toMatch(
      /^options root=PARTUUID=4f757470-03 .*rauc\.slot=B/m,
    );
    const state = JSON.parse(await readFile(join(box.paths.updateDir, 'state.json'), 'utf8')) as {
      phase: string;
      target: { version: string; slot: string };
    };
    expect(state).toMatchObject({ phase: 'rebooting', target: { version: '2.0.0', slot: 'B' } });
  });

  it('installs an older bundle with --allow-older', async () => {
    const result = await install(box.bundle('older-allowed', { version: '0.9.1' }), '--allow-older');
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(join(box.esp, 'slot-b/release'), 'utf8')).toMatch(/^VERSION=0\.9\.1$/m);
  });
});
