// Time on an isolated site (DESIGN.md, "Time without the internet"): the chrony settings that follow
// from a box's role, written by first boot from the bundle it applies. The image bakes in only what
// every box shares (no public NTP; step a far-off clock: image-build/files/chrony-outpost.conf).
//   hub:    serves its clock to the private LAN ranges (`allow`) at stratum 10 (`local`), with no
//           source of its own (the site has no NTP server to follow).
//   camera: follows the hub (`server HUB iburst`), HUB being the host of its uplink URL (the hub's IP
//           when the site gave one, else its host name: docs/provisioning.md), and serves nobody.
import type { Config } from '../../daemon/src/config/schema.js';

/** Where first boot writes the role's settings; Debian's chrony.conf reads `confdir /etc/chrony/conf.d`. */
export const CHRONY_ROLE_FILE = '/etc/chrony/conf.d/outpost-role.conf';

/** Private LAN ranges the hub answers (RFC 1918, RFC 4193). */
export const TIME_CLIENT_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'] as const;

/** The hub's address as a camera dials it: the host of `uplink.url`, without IPv6 brackets. */
export function hubAddressOf(config: Config): string | undefined {
  if (config.role !== 'camera' || config.uplink === undefined) return undefined;
  return new URL(config.uplink.url).hostname.replace(/^\[(.*)\]$/, '$1');
}

/** The content of CHRONY_ROLE_FILE for a box running `config`. */
export function chronyRoleConfig(config: Config): string {
  const header = `# ${CHRONY_ROLE_FILE}: written by outpost-provision firstboot from the bundle (${config.role} ${config.device} on site ${config.site}).\n# Rewritten at each bundle; edit the site, not this file (docs/provisioning.md, "Time").\n`;
  if (config.role === 'hub') {
    return (
      header +
      '# The hub serves time to the site: its own clock, to private LAN addresses.\n' +
      TIME_CLIENT_RANGES.map((range) => `allow ${range}\n`).join('') +
      // Not `orphan`: with it chronyd waits 300 s (waitunsynced) before serving its local clock, so
      // every camera booting with the hub would run on its stale clock for five minutes.
      'local stratum 10\n'
    );
  }
  const hub = hubAddressOf(config);
  if (hub === undefined) throw new Error(`a camera config without uplink.url (${config.device})`);
  return header + '# A camera follows the hub and serves nobody.\n' + `server ${hub} iburst\n`;
}
