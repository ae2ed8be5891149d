// Every `outpost` command finds the daemon the same way (config/locate.ts): --config, --root or
// --defaults, else /etc/outpost/outpost.yaml, else the embedded defaults. And a provisioned hub runs
// on a development machine as its installed bundle, with `outpost run --root DIR` after
// `outpost-provision firstboot --root DIR`: the config's /etc/outpost and /var/lib/outpost paths follow
// the root, and the tools reach that daemon with the same --root.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { locateConfig, rerootConfig } from '../daemon/src/config/locate.js';
import { DEFAULT_CONFIG_PATH, parseConfig } from '../daemon/src/config/load.js';
import { cliRuns, freePort, REPO, runCliToEnd, tempDir, until } from './support/processes.js';
import { provisionedSite } from './support/provisioning.js';
import { spawnSync } from 'node:child_process';

const { start, stopAll } = cliRuns();

afterEach(async () => {
  await stopAll();
});

const noProvisionedBox = existsSync(DEFAULT_CONFIG_PATH);

describe('how a command finds the daemon', () => {
  it.skipIf(noProvisionedBox)(
    'with no flag and no /etc/outpost/outpost.yaml, chat, clip and clips pull all look for the embedded-defaults daemon',
    async () => {
      const state = await tempDir('outpost-state-');
      const env = { STATE_DIRECTORY: state };
      const out = await tempDir('outpost-console-');
      const runs = {
        chat: await runCliToEnd(['chat', 'send', 'ops', 'hello'], env),
        clip: await runCliToEnd(['clip'], env),
        pull: await runCliToEnd(['clips', 'pull', '--out', out, '--timeout', '1'], env),
        pullDefaults: await runCliToEnd(['clips', 'pull', '--defaults', '--out', out, '--timeout', '1'], env),
      };
      // No daemon runs there: each names the same password file of the daemon it looked for.
      for (const [name, run] of Object.entries(runs)) {
        expect(run.stderr, name).toContain(join(state, 'local-admin.password'));
        expect(run.stderr, name).not.toMatch(/does not exist|unknown option/);
      }
      await expect(locateConfig({}, false)).rejects.toThrow(/does not exist/);
    },
  );

  it('--root takes a provisioned config’s /etc/outpost and /var/lib/outpost paths under the root, nothing else', () => {
    const config = parseConfig(
      [
        'dataDir: /var/lib/outpost',
        'broker:\n  identitiesFile: /etc/outpost/identities.json',
        'cameras:\n  - name: cam0\n    source:\n      type: v4l2\n      device: /dev/video0\n    rtp:\n      port: 5004',
        'clips:\n  preRollDir: /run/outpost/preroll',
      ].join('\n'),
      'test.yaml',
    );
    const moved = rerootConfig(config, '/srv/hub');
    expect(moved.dataDir).toBe('/srv/hub/var/lib/outpost');
    expect(moved.broker.identitiesFile).toBe('/srv/hub/etc/outpost/identities.json');
    expect(moved.cameras[0]?.source).toEqual(config.cameras[0]?.source);
    expect(moved.clips.preRollDir).toBe('/run/outpost/preroll');
  });
});

describe('a provisioned hub on a development machine', () => {
  it('firstboot --root DIR, then outpost run --root DIR; chat, clip and clips pull reach it with --root DIR', async () => {
    const site = await provisionedSite();
    const root = await tempDir('outpost-devhub-');
    await mkdir(join(root, 'boot/firmware'), { recursive: true });
    await writeFile(join(root, 'boot/firmware/outpost-bundle.json'), site.hubBundle);
    const installed = spawnSync(
      process.execPath,
      [join(REPO, 'dist/provisioning/src/cli.js'), 'firstboot', '--root', root, '--no-hostname'],
      { encoding: 'utf8' },
    );
    expect(installed.status, installed.stderr).toBe(0);
    expect(installed.stdout + installed.stderr).toContain(`outpost run --root ${root}`);

    // Only what a shared test machine needs: free loopback ports, and no camera streaming to the
    // site's SFU address. The paths stay as provisioned (/etc/outpost/…, /var/lib/outpost).
    const file = join(root, 'etc/outpost/outpost.yaml');
    const text = await readFile(file, 'utf8');
    expect(text).toContain('dataDir: /var/lib/outpost');
    const [tcp, mqtts, wss] = [await freePort(), await freePort(), await freePort()];
    await writeFile(
      file,
      text
        .replace(
          /mqtts:\n {4}host: 0\.0\.0\.0\n {4}port: 8883/,
          `mqtts:\n    host: 127.0.0.1\n    port: ${mqtts}`,
        )
        .replace(/wss:\n {4}host: 0\.0\.0\.0\n {4}port: 8884/, `wss:\n    host: 127.0.0.1\n    port: ${wss}`)
        .replace('  identitiesFile:', `  tcp:\n    port: ${tcp}\n  identitiesFile:`)
        .replace('url: mqtt://127.0.0.1:1883', `url: mqtt://127.0.0.1:${tcp}`)
        .replace(/sfu:\n {2}host: [\d.]+/, 'sfu:\n  host: 127.0.0.1')
        .replace(/cameras:\n(?: {2}.*\n?)*/, 'cameras: []\n'),
    );

    const hub = start(['run', '--root', root]);
    await hub.waitForLog((line) => line.msg === 'outpost running', 30_000);
    await hub.waitForLog((line) => line.msg === 'uplink connected', 30_000);
    expect(existsSync(join(root, 'var/lib/outpost/local-admin.password'))).toBe(true);

    const out = await tempDir('outpost-console-');
    const pull = start(['clips', 'pull', '--root', root, '--out', out, '--timeout', '10']);
    await until(() => pull.stdout().includes('listening for clips'), 20_000, 'the receiver to subscribe');
    expect(pull.stdout()).toMatch(/listening for clips on mqtt:\/\/127\.0\.0\.1:\d+ \(site plant-7\)/);
    const chat = await runCliToEnd(['chat', 'send', '--root', root, 'ops', 'hello from the bench']);
    expect(chat.code, chat.stderr).toBe(0);
    const clip = await runCliToEnd(['clip', '--root', root]);
    expect(clip.code, clip.stderr).toBe(0);
    // The hub has no camera: its clip fails, and the receiver hears both alerts.
    await until(() => pull.stdout().includes('alert hub: clip-failed'), 20_000, 'the clip-failed alert');
    expect(pull.stdout()).toMatch(/alert hub: panic raised/);
  });
});
