// `outpost chat send` and `outpost chat tail` against a running daemon: on the box as local-admin, and
// from a "laptop" with --url and a staff identity; the broker stamps each sender.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubDataDir, PEOPLE, SITE } from '../support/broker.js';
import { freePort, runCli, runCliToEnd, until, writeTemp, type Run } from '../support/processes.js';

let daemon: Run;
let config: string;
let port: number;
let alicePasswordFile: string;

beforeAll(async () => {
  const { dataDir, identitiesFile } = await hubDataDir();
  alicePasswordFile = join(dataDir, 'alice.pw');
  await writeFile(alicePasswordFile, `${PEOPLE.alice?.password}\n`, { mode: 0o600 });
  port = await freePort();
  config = await writeTemp(
    'outpost.yaml',
    `site: ${SITE}\ndevice: hub\ndataDir: ${dataDir}\nbroker:\n  tcp:\n    port: ${port}\n  identitiesFile: ${identitiesFile}\ncameras: []\n`,
  );
  daemon = runCli(['run', '--config', config]);
  await daemon.waitForLog((line) => line.msg === 'outpost running');
});

afterAll(async () => {
  daemon.child.kill('SIGTERM');
  await daemon.exited();
});

describe('outpost chat', () => {
  it('send on the box and from a laptop; tail prints the history with the stamped senders', async () => {
    const local = await runCliToEnd(['chat', 'send', 'ops', 'gate 3 open', '--config', config]);
    expect(local.code, local.stderr).toBe(0);
    const remote = await runCliToEnd([
      'chat', 'send', 'ops', 'on my way',
      '--url', `mqtt://127.0.0.1:${port}`, '--username', 'alice', '--password-file', alicePasswordFile, '--site', SITE,
    ]); // prettier-ignore
    expect(remote.code, remote.stderr).toBe(0);
    const tail = await runCliToEnd([
      'chat',
      'tail',
      'ops',
      '--count',
      '2',
      '--timeout',
      '10',
      '--config',
      config,
    ]);
    expect(tail.code, tail.stderr).toBe(0);
    expect(tail.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^\d\d:\d\d:\d\d local-admin: gate 3 open$/),
      expect.stringMatching(/^\d\d:\d\d:\d\d alice: on my way$/),
    ]);
  });

  it('tail prints a message sent while it runs, after the history', async () => {
    expect((await runCliToEnd(['chat', 'send', 'live', 'first', '--config', config])).code).toBe(0);
    const tail = runCli(['chat', 'tail', 'live', '--count', '2', '--timeout', '20', '--config', config]);
    await until(() => tail.stdout().includes('first'), 10_000, 'tail to print the history');
    expect((await runCliToEnd(['chat', 'send', 'live', 'second', '--config', config])).code).toBe(0);
    const { code } = await tail.exited();
    expect(code).toBe(0);
    expect(tail.stdout()).toMatch(/local-admin: first\n.*local-admin: second\n$/);
  });

  it('a bad channel name is a usage error; a wrong password and a stopped broker are clear failures', async () => {
    const bad = await runCliToEnd(['chat', 'send', 'Ops Room', 'x', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad channel name "Ops Room".*lowercase/);
    await writeFile(alicePasswordFile, 'wrong\n');
    const refused = await runCliToEnd([
      'chat', 'send', 'ops', 'x',
      '--url', `mqtt://127.0.0.1:${port}`, '--username', 'alice', '--password-file', alicePasswordFile, '--site', SITE,
    ]); // prettier-ignore
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/cannot reach the broker.*refused these credentials/i);
    const nobody = await runCliToEnd([
      'chat', 'send', 'ops', 'x',
      '--url', `mqtt://127.0.0.1:${await freePort()}`, '--username', 'alice', '--password-file', alicePasswordFile, '--site', SITE,
    ]); // prettier-ignore
    expect(nobody.code).toBe(3);
    expect(nobody.stderr).toMatch(/cannot reach the broker.*is the daemon running/);
  });
});
