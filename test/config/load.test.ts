import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../daemon/src/errors.js';
import {
  embeddedDefaults,
  formatPath,
  loadConfig,
  parseConfig,
  redactSecrets,
} from '../../daemon/src/config/load.js';

const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url).pathname;

function problemsOf(text: string) {
  try {
    parseConfig(text, 'test.yaml');
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected the config to be rejected');
}

describe('configuration', () => {
  it('embedded defaults: one test camera, broker on loopback, RTP to 127.0.0.1:5004', () => {
    const config = embeddedDefaults();
    expect(config.broker.tcp).toEqual({ host: '127.0.0.1', port: 1883 });
    expect(config.cameras).toHaveLength(1);
    expect(config.cameras[0]).toMatchObject({ name: 'cam0', source: { type: 'test' }, rtp: { port: 5004 } });
    expect(config.sfu.host).toBe('127.0.0.1');
  });

  it('reads a good file with every key, filling defaults for what it leaves out', async () => {
    const config = await loadConfig(fixture('good.yaml'));
    expect(config.site).toBe('riverside');
    expect(config.cameras[0]).toMatchObject({ name: 'gate', width: 1920, rtp: { port: 5004, ssrc: 12345 } });
    expect(config.cameras[1]).toMatchObject({
      name: 'yard',
      width: 1280,
      framerate: 30,
      rtp: { port: 5006 },
    });
  });

  it('an empty file means the schema defaults: the system data dir, no console, no Janus of its own', () => {
    const config = parseConfig('', 'empty.yaml');
    expect(config.dataDir).toBe('/var/lib/outpost');
    expect(config.console).toBeUndefined();
    expect(config.sfu).toMatchObject({ mode: 'static', janus: { launch: false } });
    const defaults = embeddedDefaults();
    expect(config.broker).toEqual(defaults.broker);
    expect(config.clips).toEqual(defaults.clips);
  });

  it('embedded defaults run a Janus of their own and the console on loopback with a development login', () => {
    const config = embeddedDefaults();
    expect(config.sfu).toMatchObject({ mode: 'janus', host: '127.0.0.1', janus: { launch: true } });
    expect(config.console).toMatchObject({ host: '127.0.0.1', port: 8443, devLogin: true });
  });

  it('reports every mistake with its path, value and line, not just the first', () => {
    const problems = problemsOf(
      [
        'site: Bad Name', //                  line 1: wrong format
        'broker:',
        '  tcp:',
        '    port: 70000', //                 line 4: out of range
        'cameras:',
        '  - width: wide', //                 line 6: wrong type, and name missing
        '    bitrateKpbs: 10', //             line 7: unknown key (typo)
      ].join('\n'),
    );
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    expect(Object.keys(byPath).sort()).toEqual(
      ['broker.tcp.port', 'cameras[0].bitrateKpbs', 'cameras[0].name', 'cameras[0].width', 'site'].sort(),
    );
    expect(byPath['site']).toMatchObject({ line: 1, value: 'Bad Name' });
    expect(byPath['broker.tcp.port']).toMatchObject({ line: 4, value: 70000, message: 'a port is 1–65535' });
    expect(byPath['cameras[0].width']).toMatchObject({ line: 6, value: 'wide' });
    expect(byPath['cameras[0].name']?.message).toBe('required key is missing');
    expect(byPath['cameras[0].bitrateKpbs']?.line).toBe(7);
    expect(byPath['cameras[0].bitrateKpbs']?.message).toContain('did you mean "bitrateKbps"');
  });

  it('refuses plain MQTT on a LAN address and says why', () => {
    const [problem] = problemsOf('broker:\n  tcp:\n    host: 0.0.0.0\n');
    expect(problem).toMatchObject({ path: 'broker.tcp.host', value: '0.0.0.0' });
    expect(problem?.message).toMatch(/loopback only/);
  });

  it('a bridge leaves the site over TLS with a credential, from a hub, one way per topic', () => {
    const message = (yaml: string, path: string) =>
      problemsOf(yaml).find((problem) => problem.path === path)?.message ?? '(no problem reported)';
    expect(
      message('bridge:\n  url: mqtt://ops.example:1883\n  username: s\n  passwordFile: /p\n', 'bridge.url'),
    ).toMatch(/use mqtts:\/\//);
    expect(
      message('bridge:\n  url: mqtts://ops.example:8883\n  username: s\n  passwordFile: /p\n', 'bridge.ca'),
    ).toMatch(/needs the CA/);
    expect(message('bridge:\n  url: mqtts://ops.example:8883\n  ca: /ca\n', 'bridge.passwordFile')).toMatch(
      /needs a credential/,
    );
    expect(
      message(
        "bridge:\n  url: mqtts://o:8883\n  ca: /ca\n  cert: /c\n  key: /k\n  up: [{ topic: '+/cmd/ping', class: reply }]\n",
        'bridge.down',
      ),
    ).toMatch(/may cross one way only/);
    expect(
      message(
        'bridge:\n  url: mqtts://o:8883\n  ca: /ca\n  cert: /c\n  key: /k\n  up: [{ topic: outpost/v1/x/#, class: alert }]\n',
        'bridge.up[0].topic',
      ),
    ).toMatch(/without that prefix/);
    expect(
      message(
        'role: camera\nuplink: { url: mqtts://h:8883, ca: /ca, username: c, passwordFile: /p }\nbridge:\n  url: mqtts://o:8883\n  ca: /ca\n  cert: /c\n  key: /k\n',
        'bridge',
      ),
    ).toMatch(/only the hub bridges/);
    // The defaults carry chat both ways and commands down: accepted.
    expect(() =>
      parseConfig('bridge:\n  url: mqtts://o:8883\n  ca: /ca\n  cert: /c\n  key: /k\n', 't.yaml'),
    ).not.toThrow();
  });

  it('metrics need a credential, and HTTPS off loopback', () => {
    expect(
      problemsOf('metrics: { port: 9464 }\n')
        .map((p) => p.message)
        .join(),
    ).toMatch(/no anonymous scraping/);
    expect(
      problemsOf('metrics: { bearerTokenFile: /t }\n')
        .map((p) => p.message)
        .join(),
    ).toMatch(/HTTPS/);
    expect(() => parseConfig('metrics: { host: 127.0.0.1, bearerTokenFile: /t }\n', 't.yaml')).not.toThrow();
  });

  it('refuses a pre-roll folder with "%" in it (segment names are printf patterns)', () => {
    const [problem] = problemsOf('clips:\n  preRollDir: /run/100%\n');
    expect(problem).toMatchObject({ path: 'clips.preRollDir' });
    expect(problem?.message).toMatch(/cannot contain "%"/);
  });

  it('refuses two cameras with the same name or RTP port', () => {
    const problems = problemsOf('cameras:\n  - name: a\n  - name: a\n    rtp:\n      port: 5004\n');
    expect(problems.map((p) => p.path).sort()).toEqual(['cameras[1].name', 'cameras[1].rtp.port']);
  });

  it('reports YAML syntax errors with their line', () => {
    const [problem] = problemsOf('site: demo\ncameras: [\n  - name\n');
    expect(problem?.message).toMatch(/YAML syntax/);
    expect(problem?.line).toBeGreaterThan(1);
  });

  it('names a missing file and the fix', async () => {
    await expect(loadConfig('/nonexistent/outpost.yaml')).rejects.toThrow(/does not exist/);
  });

  it('formats paths as people write them', () => {
    expect(formatPath(['cameras', 0, 'rtp', 'port'])).toBe('cameras[0].rtp.port');
  });

  it('redacts secret keys at any depth', () => {
    expect(redactSecrets({ sfu: { apiSecret: 's3cret', host: 'h' }, users: [{ password: 'p' }] })).toEqual({
      sfu: { apiSecret: '<redacted>', host: 'h' },
      users: [{ password: '<redacted>' }],
    });
  });
});
