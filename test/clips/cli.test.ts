// The panic path through the real daemon and the `outpost` command: `outpost clip` on the box raises
// the alert and the clip reaches `outpost clips pull`; a camera box kill -9'ed mid-delivery finishes the
// delivery after it is started again.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashFile } from '../../daemon/src/clips/store.js';
import { connectAs, PEOPLE, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { cameraBoxConfig, testCameraYaml } from '../support/box.js';
import { testPki } from '../support/pki.js';
import { cliRuns, freePort, runCliToEnd, tempDir, until, writeTemp } from '../support/processes.js';

const { start, stopAll } = cliRuns();
let hub: TestBroker | undefined;

afterEach(async () => {
  await stopAll();
  await hub?.stop();
  hub = undefined;
});

describe('outpost clip and outpost clips pull', () => {
  it('outpost clip raises the alert at once and the clip reaches outpost clips pull, verified', async () => {
    const port = await freePort();
    const dataDir = await tempDir('outpost-data-');
    const file = await writeTemp(
      'outpost.yaml',
      [
        'site: test',
        'device: box1',
        `dataDir: ${dataDir}`,
        `broker:\n  tcp:\n    port: ${port}`,
        await testCameraYaml(),
        'clips:\n  preRollSeconds: 1\n  postRollSeconds: 1',
      ].join('\n'),
    );
    const daemon = start(['run', '--config', file]);
    await daemon.waitForLog((line) => line.msg === 'uplink connected');
    const out = await tempDir('outpost-console-');
    // The box's own daemon, found from its config as every tool finds it.
    const pull = start(['clips', 'pull', '--out', out, '--config', file, '--once', '--timeout', '40']);
    await until(() => pull.stdout().includes('listening for clips'), 20_000, 'the receiver to subscribe');

    const asked = await runCliToEnd(['clip', '--config', file]);
    expect(asked.code, asked.stderr).toBe(0);
    const clipId = /clip (\S+) /.exec(asked.stdout)?.[1] ?? '';
    expect(asked.stdout).toMatch(/^alert sent; clip \S+ \(cam0\) is being recorded/);
    await daemon.waitForLog((line) => line.msg === 'panic: alert published' && line.trigger === 'cli');

    const { code } = await pull.exited(45_000);
    expect(code, pull.stdout() + pull.stderr()).toBe(0);
    expect(pull.stdout()).toMatch(new RegExp(`alert box1: panic raised .*clip ${clipId}`));
    expect(pull.stdout()).toMatch(/sha256 verified/);
    const path = join(out, 'box1', `${clipId}.mp4`);
    expect(existsSync(path)).toBe(true);
    expect((await hashFile(path)).sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a camera box kill -9ed mid-delivery completes the delivery after it starts again', async () => {
    hub = await startTestBroker();
    const { file } = await cameraBoxConfig(hub.mqttsPort, [
      await testCameraYaml(),
      'clips:\n  preRollSeconds: 1\n  postRollSeconds: 1\n  chunkBytes: 1024\n  inFlightChunks: 1',
    ]);
    // The console's persistent session, then the console goes away.
    const console1 = await connectAs(hub, 'console', { clientId: 'console.clips-pull', clean: false });
    await console1.subscribeAsync(
      [`outpost/v1/${SITE}/+/alert`, `outpost/v1/${SITE}/+/clip/+`, `outpost/v1/${SITE}/+/clip/+/chunk/+`],
      { qos: 1 },
    );
    await console1.endAsync();

    const first = start(['run', '--config', file]);
    await first.waitForLog((line) => line.msg === 'uplink connected');
    // Cut the hub the moment chunk 3 passes it, then kill the box while the rest is undelivered.
    const watcher = await connectAs(hub, 'console');
    let hubDown: Promise<void> | undefined;
    watcher.on('message', (topic) => {
      if (topic.endsWith('/chunk/3')) hubDown ??= hub?.broker.stop();
    });
    await watcher.subscribeAsync(`outpost/v1/${SITE}/cam-a/clip/+/chunk/+`, { qos: 1 });
    // `outpost clip` on a camera box talks to its own loopback broker (the uplink goes to the hub).
    const asked = await runCliToEnd(['clip', '--config', file]);
    expect(asked.code, asked.stderr).toBe(0);
    const clipId = /clip (\S+) /.exec(asked.stdout)?.[1] ?? '';
    await until(() => hubDown !== undefined, 20_000, 'chunk 3 at the hub');
    await hubDown;
    watcher.end(true);
    first.child.kill('SIGKILL');
    await first.exited();

    await hub.restart();
    const second = start(['run', '--config', file]);
    await second.waitForLog((line) => line.msg === 'resuming clip delivery');
    await second.waitForLog(
      (line) => line.msg === 'clip delivered to the hub' && line.clipId === clipId,
      30_000,
    );

    const out = await tempDir('outpost-console-');
    const passwordFileConsole = await writeTemp('console.password', `${PEOPLE.console?.password}\n`);
    const pulled = await runCliToEnd([
      'clips', 'pull', '--out', out, '--url', `mqtts://127.0.0.1:${hub.mqttsPort}`, '--site', SITE,
      '--username', 'console', '--password-file', passwordFileConsole, '--ca', testPki().ca, '--timeout', '8',
    ]); // prettier-ignore
    expect(pulled.stdout).toMatch(new RegExp(`clip cam-a/${clipId}: .* sha256 verified`));
    expect(pulled.stdout).toMatch(new RegExp(`alert cam-a: panic raised .*clip ${clipId}`));
    expect(pulled.stdout).not.toMatch(/incomplete/);
    expect(pulled.code).toBe(0);
  });
});
