// `outpost centre console --config FILE` as an operator at the centre runs it: on the config that
// `outpost-provision centre init` wrote it serves the console and stops cleanly on SIGTERM; a config
// with mistakes lists every one of them and exits 2 without starting anything.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { centrePaths, initCentre } from '../../provisioning/src/centre.js';
import { hubRequest } from '../support/console-site.js';
import { freePort, runCli, runCliToEnd, tempDir, writeTemp } from '../support/processes.js';

describe('outpost centre console', () => {
  it('serves the console on the config centre init wrote, and stops cleanly on SIGTERM', async () => {
    const dir = join(await tempDir('outpost-ops-'), 'centre');
    await initCentre(dir, { host: 'localhost', ip: '127.0.0.1' });
    const file = centrePaths(dir).consoleConf;
    const port = await freePort();
    const config = parse(await readFile(file, 'utf8')) as { console: Record<string, unknown> };
    await writeFile(
      file,
      stringify({
        ...config,
        dataDir: await tempDir('outpost-centre-console-'),
        console: { ...config.console, host: '127.0.0.1', port },
      }),
    );
    const run = runCli(['centre', 'console', '--config', file]);
    const line = await run.waitForLog(
      (entry) => String(entry.msg).startsWith('centre console: open'),
      20_000,
    );
    expect(line.msg).toBe(`centre console: open https://127.0.0.1:${port}/`);
    // Its certificate is the central broker's, from the centre CA; nothing answers without a login.
    const session = await hubRequest(`https://127.0.0.1:${port}/api/session`, {
      ca: await readFile(centrePaths(dir).caCert),
    });
    expect(session.status).toBe(401);
    run.child.kill('SIGTERM');
    expect((await run.exited()).code).toBe(0);
  });

  it('lists every mistake in its config and exits 2', async () => {
    const file = await writeTemp(
      'console.yaml',
      ['centralBroker:', '  url: mqtt://10.1.0.5:1883', 'console:', '  devLogin: true', 'colsole: {}'].join(
        '\n',
      ),
    );
    const { code, stderr } = await runCliToEnd(['centre', 'console', '--config', file]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/3 problems/);
    expect(stderr).toMatch(/centralBroker\.url = .*use mqtts:\/\//);
    expect(stderr).toMatch(/console\.devLogin = true: the centre has no local-admin/);
    expect(stderr).toMatch(/colsole = .*did you mean "console"\?/);
  });
});
