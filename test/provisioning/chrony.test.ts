// chrony's role settings, as first boot writes them (provisioning/src/chrony.ts): the hub serves time
// to the LAN, a camera follows the hub named in its uplink URL; nobody uses public NTP.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../daemon/src/config/load.js';
import { chronyRoleConfig, hubAddressOf } from '../../provisioning/src/chrony.js';

const camera = (url: string) =>
  parseConfig(
    [
      'site: plant-7',
      'device: cam-north',
      'role: camera',
      'uplink:',
      `  url: ${url}`,
      '  username: cam-north',
      '  passwordFile: /etc/outpost/uplink.password',
      '  ca: /etc/outpost/tls/ca.crt',
      '',
    ].join('\n'),
    'camera config',
  );
const hub = parseConfig('site: plant-7\ndevice: hub\nrole: hub\n', 'hub config');

/** The directives of a chrony file: its non-comment lines. */
const directives = (text: string): string[] =>
  text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));

describe('chrony role settings', () => {
  it('a camera follows the hub at the address of its uplink, and nothing else', () => {
    expect(directives(chronyRoleConfig(camera('mqtts://192.168.10.2:8883')))).toEqual([
      'server 192.168.10.2 iburst',
    ]);
  });

  it('a camera dials the hub by name when the site has no hub IP, and an IPv6 hub without brackets', () => {
    expect(directives(chronyRoleConfig(camera('mqtts://hub.plant.lan:8883')))).toEqual([
      'server hub.plant.lan iburst',
    ]);
    expect(hubAddressOf(camera('mqtts://[fd00::2]:8883'))).toBe('fd00::2');
    expect(directives(chronyRoleConfig(camera('mqtts://[fd00::2]:8883')))).toEqual(['server fd00::2 iburst']);
  });

  it('the hub serves its clock to private LAN ranges at stratum 10, at once, and follows no server', () => {
    expect(directives(chronyRoleConfig(hub))).toEqual([
      'allow 10.0.0.0/8',
      'allow 172.16.0.0/12',
      'allow 192.168.0.0/16',
      'allow fc00::/7',
      // No `orphan`: chronyd would wait 300 s (waitunsynced) before serving.
      'local stratum 10',
    ]);
    expect(hubAddressOf(hub)).toBeUndefined();
  });
});
