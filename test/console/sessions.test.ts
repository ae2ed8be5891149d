// Console logins kept across a restart of the hub daemon (an update's reboot, a crash): the saved file
// holds only a hash of each cookie's token; a log-out, a revoked account or an expired login does not
// come back; an unreadable file logs everyone out and says so. Then the same through the console's
// HTTPS server on the real broker, stopped and started again.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../daemon/src/config/schema.js';
import { ConsoleServer } from '../../daemon/src/console/server.js';
import { Sessions } from '../../daemon/src/console/sessions.js';
import { TelemetryHistory } from '../../daemon/src/console/telemetry-history.js';
import type { Identity } from '../../daemon/src/mqtt/identities.js';
import { recordingLogger, SITE } from '../support/broker.js';
import { hubRequest } from '../support/console-site.js';
import { brokerPerTest } from '../support/per-test.js';
import { testPki } from '../support/pki.js';
import { freePort, tempDir } from '../support/processes.js';

const ops = { name: 'ops', role: 'console' as const };
const HOUR = 3600_000;
const cookieOf = (token: string) => `outpost_session=${token}`;
let clock = Date.now();
const opened: Sessions[] = [];
afterEach(async () => {
  for (const sessions of opened.splice(0)) await sessions.close();
});

async function sessionsIn(
  file: string,
  stillValid: (identity: Identity) => boolean = () => true,
  log: Logger = pino({ level: 'silent' }),
) {
  const sessions = new Sessions({ idleMs: 12 * HOUR, file, log, now: () => clock });
  opened.push(sessions);
  await sessions.load(stillValid);
  return sessions;
}

describe('console logins across a restart', () => {
  it('a login is restored with its account; the file holds no token', async () => {
    const file = join(await tempDir('outpost-sessions-'), 'sessions.json');
    const first = await sessionsIn(file);
    const { token } = first.create(ops);
    await first.close();
    expect(await readFile(file, 'utf8')).not.toContain(token);
    const second = await sessionsIn(file);
    expect(second.fromCookie(cookieOf(token))?.identity).toEqual(ops);
    expect(second.fromCookie(cookieOf('not-a-token'))).toBeUndefined();
  });

  it('a log-out, a revoked account and a login idle past its limit do not come back', async () => {
    const file = join(await tempDir('outpost-sessions-'), 'sessions.json');
    const first = await sessionsIn(file);
    const loggedOut = first.create(ops);
    const revoked = first.create({ name: 'alice', role: 'staff' });
    const idle = first.create({ name: 'bob', role: 'console' });
    const used = first.create({ name: 'carol', role: 'console' });
    first.end(loggedOut.session.id);
    clock += 11 * HOUR;
    first.fromCookie(cookieOf(used.token)); // used at 11 h: its last use is saved at close
    await first.close();
    clock += 2 * HOUR; // 13 h after the logins: bob idle past 12 h, carol 2 h since her last use
    const second = await sessionsIn(file, (identity) => identity.name !== 'alice');
    expect(second.fromCookie(cookieOf(loggedOut.token))).toBeUndefined();
    expect(second.fromCookie(cookieOf(revoked.token))).toBeUndefined();
    expect(second.fromCookie(cookieOf(idle.token))).toBeUndefined();
    expect(second.fromCookie(cookieOf(used.token))?.identity.name).toBe('carol');
    expect(second.size).toBe(1);
  });

  it('an expired login ends by itself: its connections close without its cookie coming back', async () => {
    const sessions = await sessionsIn(join(await tempDir('outpost-sessions-'), 'sessions.json'));
    const { session } = sessions.create(ops);
    let ended = 0;
    session.onEnd.add(() => (ended += 1));
    clock += 13 * HOUR;
    sessions.sweep();
    expect(ended).toBe(1);
    expect(sessions.size).toBe(0);
  });

  it('a log-out that cannot be saved deletes the file: a restart logs everyone out, never brings it back', async () => {
    const dir = await tempDir('outpost-sessions-');
    const file = join(dir, 'sessions.json');
    const first = await sessionsIn(file);
    const { session, token } = first.create(ops);
    await first.close();
    const second = await sessionsIn(file);
    await mkdir(`${file}.tmp`); // the next write fails, as on a full disk
    second.end(session.id);
    await second.close();
    const third = await sessionsIn(file);
    expect(third.fromCookie(cookieOf(token))).toBeUndefined();
  });

  it('an unreadable file logs everyone out, says so, and is kept as .bad', async () => {
    const file = join(await tempDir('outpost-sessions-'), 'sessions.json');
    await writeFile(file, '{"sessions": [{"id": 1}');
    const { log, lines } = recordingLogger();
    const sessions = await sessionsIn(file, () => true, log);
    expect(sessions.size).toBe(0);
    expect(lines.some((line) => String(line.msg).includes('console logins file unreadable'))).toBe(true);
    expect(await readFile(`${file}.bad`, 'utf8')).toContain('"sessions"');
    const { token } = sessions.create(ops);
    expect(sessions.fromCookie(cookieOf(token))).toBeDefined();
  });
});

describe('console server', () => {
  const perTest = brokerPerTest();

  it('a logged-in operator stays logged in when the hub daemon stops and starts again', async () => {
    const hub = await perTest.start();
    const pki = testPki();
    const port = await freePort();
    const config = configSchema.parse({
      site: SITE,
      device: 'hub',
      dataDir: hub.dataDir,
      console: { host: '127.0.0.1', port },
    });
    if (!config.console) throw new Error('no console settings');
    const log = pino({ level: 'silent' });
    const server = () =>
      new ConsoleServer({
        site: SITE,
        device: 'hub',
        dataDir: hub.dataDir,
        console: config.console!,
        tls: { cert: pki.serverCert, key: pki.serverKey },
        janus: undefined,
        broker: hub.broker,
        telemetry: new TelemetryHistory({
          site: SITE,
          dataDir: hub.dataDir,
          windowMinutes: 60,
          bus: hub.broker,
          log,
        }),
        clips: undefined,
        maxPacketBytes: 65536,
        log,
      });
    const origin = `https://127.0.0.1:${port}`;
    const first = server();
    await first.start();
    const login = await hubRequest(`${origin}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ username: 'console', password: 'pw-console' }),
    });
    expect(login.status, login.body).toBe(200);
    const cookie = String(login.headers['set-cookie']).split(';')[0] ?? '';
    await first.stop();

    const second = server();
    await second.start();
    try {
      const session = await hubRequest(`${origin}/api/session`, { headers: { cookie } });
      expect(session.status, session.body).toBe(200);
      expect(JSON.parse(session.body)).toMatchObject({ username: 'console', role: 'console' });
    } finally {
      await second.stop();
    }
  });
});
