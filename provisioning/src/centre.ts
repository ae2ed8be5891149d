// The operations centre's side of the site bridges (docs/bridge.md): a centre directory from which the
// centre's own broker is configured. Mosquitto is configured here (a config snippet, a password file and
// an ACL); the same rules are written for EMQX's file authorization, which is documented, not run.
//
//   CENTRE/centre.yaml                     the centre's host, its sites and console accounts (0600)
//   CENTRE/ca/ca.crt, ca/ca.key            the centre CA: signs the central broker's certificate and the
//                                          sites' bridge client certificates (key 0600)
//   CENTRE/broker/server.crt, server.key   the central broker's TLS certificate
//   CENTRE/mosquitto/outpost.conf          listeners (8883 password, 8884 client certificate) + files
//   CENTRE/mosquitto/passwd                mosquitto password file (PBKDF2-SHA512, `$7$`), 0600
//   CENTRE/mosquitto/acl                   each site's bridge: write under its own site prefix only
//   CENTRE/emqx/acl.conf                   the same rules for EMQX 5 (file authorizer)
//   CENTRE/console/console.yaml            `outpost centre console --config` it: the console at the centre
//   CENTRE/sites/NAME/                     the bridge kit for site NAME (what the site's tech imports
//                                          with `outpost-provision bridge set`): bridge.yaml, ca.crt,
//                                          bridge.password or client.crt + client.key
//
// Every operation is idempotent, like the site directory's: asking again for what exists changes
// nothing; asking for something different needs `force`.
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { OutpostError } from '../../daemon/src/errors.js';
import { identityName } from '../../daemon/src/mqtt/identities.js';
import { sitePrefix } from '../../daemon/src/mqtt/topics.js';
import { readIfExists, PUBLIC_MODE, SECRET_MODE, writeFileAtomic } from './files.js';
import { createSiteCa, issueCertificate, type KeyAndCertificate } from '../../daemon/src/tls/pki.js';
import { readSite, sitePaths, writeSettings } from './site.js';

export const CENTRE_PASSWORD_PORT = 8883;
export const CENTRE_CERT_PORT = 8884;
/** PBKDF2 rounds in the password file (mosquitto_passwd uses 101; the hash carries its own count). */
export const PBKDF2_ROUNDS = 20_000;

const hostName = z.union([z.ipv4(), z.ipv6(), z.hostname()], {
  error: 'give an IP address or a host name, e.g. 10.1.0.5 or mqtt.ops.example',
});

const centreSchema = z.strictObject({
  version: z.literal(1),
  /** The central broker's name as the sites dial it (in its certificate). */
  host: hostName,
  ip: z.union([z.ipv4(), z.ipv6()]).optional(),
  port: z.int().min(1).max(65535).default(CENTRE_PASSWORD_PORT),
  certPort: z.int().min(1).max(65535).default(CENTRE_CERT_PORT),
  /** The address the listeners bind to; every address when absent. */
  listen: z.union([z.ipv4(), z.ipv6()]).optional(),
  sites: z.record(
    identityName,
    z.strictObject({
      /** The site's account on the central broker. */
      user: z.string(),
      auth: z.enum(['password', 'cert']),
      /** Password hash in mosquitto's format (password auth). */
      hash: z.string().optional(),
    }),
  ),
  consoles: z.record(identityName, z.strictObject({ hash: z.string() })).default({}),
});
export type CentreSettings = z.output<typeof centreSchema>;

export const centrePaths = (dir: string) => ({
  settings: join(dir, 'centre.yaml'),
  caCert: join(dir, 'ca', 'ca.crt'),
  caKey: join(dir, 'ca', 'ca.key'),
  serverCert: join(dir, 'broker', 'server.crt'),
  serverKey: join(dir, 'broker', 'server.key'),
  mosquittoConf: join(dir, 'mosquitto', 'outpost.conf'),
  passwd: join(dir, 'mosquitto', 'passwd'),
  acl: join(dir, 'mosquitto', 'acl'),
  emqxAcl: join(dir, 'emqx', 'acl.conf'),
  /** `outpost centre console --config` this file: the console at the centre (docs/console.md). */
  consoleConf: join(dir, 'console', 'console.yaml'),
  kit: (site: string) => join(dir, 'sites', site),
});

/** The central account of a site's bridge (also the CN of its client certificate). */
export const bridgeUser = (site: string): string => `site-${site}`;

/** A mosquitto password-file line: `user:$7$rounds$salt$hash`, PBKDF2-HMAC-SHA512 (mosquitto ≥ 2.0). */
export function mosquittoPasswordLine(user: string, password: string, rounds = PBKDF2_ROUNDS): string {
  return `${user}:${mosquittoHash(password, rounds)}`;
}

export function mosquittoHash(password: string, rounds = PBKDF2_ROUNDS): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(password, salt, rounds, 64, 'sha512');
  return `$7$${rounds}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/**
 * The centre's rules, per account (Mosquitto ACL syntax, docs/bridge.md):
 * - a site's bridge writes only under its own site prefix, and reads only what crosses down to it
 *   (`cmd` for its boxes, its chat);
 * - a console reads every site and may send `cmd`, chat and inbox acknowledgements to any; an
 *   acknowledgement naming an operator (`…/ack/{name}`) only under its own name.
 * Anything not granted is refused (mosquitto denies by default once an ACL file is set).
 */
export function mosquittoAcl(settings: Pick<CentreSettings, 'sites' | 'consoles'>): string {
  const lines = ['# Written by outpost-provision centre (docs/bridge.md). Regenerated on every change.', ''];
  for (const [site, entry] of Object.entries(settings.sites).sort(([a], [b]) => a.localeCompare(b))) {
    const prefix = sitePrefix(site);
    lines.push(
      `# site ${site}: its bridge publishes under its own prefix only`,
      `user ${entry.user}`,
      `topic write ${prefix}/#`,
      `topic read ${prefix}/+/cmd/#`,
      `topic read ${prefix}/chat/+`,
      `topic read ${prefix}/inbox/+/+/+/ack`,
      `topic read ${prefix}/inbox/+/+/+/ack/+`,
      '',
    );
  }
  for (const name of Object.keys(settings.consoles).sort()) {
    lines.push(
      `# console ${name}: reads every site, sends commands and chat`,
      `user ${name}`,
      'topic read outpost/v1/#',
      'topic write outpost/v1/+/+/cmd/#',
      'topic write outpost/v1/+/chat/+',
      'topic write outpost/v1/+/inbox/+/+/+/ack',
      // An acknowledgement under its own name only: the site shows "acknowledged by NAME at the centre".
      `topic write outpost/v1/+/inbox/+/+/+/ack/${name}`,
      '',
    );
  }
  return `${lines.join('\n')}`;
}

/** The same rules for EMQX 5's file authorizer (etc/acl.conf), with a final deny. */
export function emqxAcl(settings: Pick<CentreSettings, 'sites' | 'consoles'>): string {
  const lines = [
    '%% Written by outpost-provision centre (docs/bridge.md): the same rules as mosquitto/acl.',
    '%% EMQX 5 file authorizer; set authorization.no_match = deny and authorization.sources = [file].',
  ];
  for (const [site, entry] of Object.entries(settings.sites).sort(([a], [b]) => a.localeCompare(b))) {
    const prefix = sitePrefix(site);
    lines.push(
      `{allow, {username, "${entry.user}"}, publish, ["${prefix}/#"]}.`,
      `{allow, {username, "${entry.user}"}, subscribe, ["${prefix}/+/cmd/#", "${prefix}/chat/+", "${prefix}/inbox/+/+/+/ack", "${prefix}/inbox/+/+/+/ack/+"]}.`,
    );
  }
  for (const name of Object.keys(settings.consoles).sort()) {
    lines.push(
      `{allow, {username, "${name}"}, subscribe, ["outpost/v1/#"]}.`,
      `{allow, {username, "${name}"}, publish, ["outpost/v1/+/+/cmd/#", "outpost/v1/+/chat/+", "outpost/v1/+/inbox/+/+/+/ack", "outpost/v1/+/inbox/+/+/+/ack/${name}"]}.`,
    );
  }
  lines.push('{deny, all}.', '');
  return lines.join('\n');
}

/** A Mosquitto config snippet for the centre (include it, or run `mosquitto -c` on it). */
export function mosquittoConf(dir: string, settings: CentreSettings): string {
  const paths = centrePaths(dir);
  const tls = [
    `cafile ${paths.caCert}`,
    `certfile ${paths.serverCert}`,
    `keyfile ${paths.serverKey}`,
    'tls_version tlsv1.2',
  ];
  return [
    '# Outpost sites bridge to this broker (docs/bridge.md). Written by outpost-provision centre.',
    'per_listener_settings false',
    'allow_anonymous false',
    `password_file ${paths.passwd}`,
    `acl_file ${paths.acl}`,
    '# Sites reconnect with a persistent session: keep what is queued for them across restarts.',
    'persistence true',
    '',
    '# Password logins (sites with `centre add-site NAME`, consoles).',
    `listener ${settings.port}${settings.listen ? ` ${settings.listen}` : ''}`,
    ...tls,
    '',
    '# Client-certificate logins (sites with `centre add-site NAME --cert`): the CN is the user name.',
    `listener ${settings.certPort}${settings.listen ? ` ${settings.listen}` : ''}`,
    ...tls,
    'require_certificate true',
    'use_identity_as_username true',
    '',
  ].join('\n');
}

export interface Centre {
  dir: string;
  settings: CentreSettings;
  ca: KeyAndCertificate;
}

export async function readCentre(dir: string): Promise<Centre> {
  const paths = centrePaths(dir);
  const text = await readIfExists(paths.settings);
  if (text === undefined) {
    throw new OutpostError('SITE_MISSING', `${dir} is not a centre directory (no centre.yaml)`, {
      hint: 'create it with `outpost-provision centre init DIR --host NAME`, or pass the right --centre',
    });
  }
  const parsed = centreSchema.safeParse(parse(text));
  if (!parsed.success) {
    throw new OutpostError(
      'SITE_INVALID',
      `${paths.settings}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      { hint: 'fix the file by hand or restore it from your backup of the centre directory' },
    );
  }
  const certPem = await readIfExists(paths.caCert);
  const keyPem = await readIfExists(paths.caKey);
  if (certPem === undefined || keyPem === undefined) {
    throw new OutpostError('SITE_INVALID', `${paths.caKey} or ${paths.caCert} is missing`, {
      hint: 'restore the centre CA from your backup; without it no site can be given a bridge certificate',
    });
  }
  return { dir, settings: parsed.data, ca: { certPem, keyPem } };
}

/** centre.yaml, the password file, the ACLs and the Mosquitto snippet, from the settings. */
async function writeCentre(centre: Centre): Promise<void> {
  const paths = centrePaths(centre.dir);
  const { settings } = centre;
  await writeFileAtomic(
    paths.settings,
    `# Outpost operations centre, written by outpost-provision (docs/bridge.md). Keep 0600.\n${stringify(settings)}`,
    SECRET_MODE,
  );
  const passwd = [
    ...Object.entries(settings.sites)
      .filter(([, entry]) => entry.hash !== undefined)
      .map(([, entry]) => `${entry.user}:${entry.hash}`),
    ...Object.entries(settings.consoles).map(([name, entry]) => `${name}:${entry.hash}`),
  ];
  await writeFileAtomic(paths.passwd, passwd.length > 0 ? `${passwd.join('\n')}\n` : '', SECRET_MODE);
  await writeFileAtomic(paths.acl, mosquittoAcl(settings), PUBLIC_MODE);
  await writeFileAtomic(paths.emqxAcl, emqxAcl(settings), PUBLIC_MODE);
  await writeFileAtomic(paths.mosquittoConf, mosquittoConf(centre.dir, settings), PUBLIC_MODE);
  await writeFileAtomic(paths.consoleConf, centreConsoleConf(centre.dir, settings), PUBLIC_MODE);
}

/**
 * The centre console's config (daemon/src/config/schema.ts centreConsoleSchema): the central broker as
 * its certificate names it, the centre CA, and HTTPS on 8443 with the broker's certificate (the console
 * runs on the broker's machine; give it its own certificate otherwise).
 */
export function centreConsoleConf(dir: string, settings: CentreSettings): string {
  const paths = centrePaths(resolve(dir));
  return [
    '# The console at the operations centre: outpost centre console --config THIS_FILE (docs/console.md).',
    '# Written by outpost-provision centre. Operators log in with `outpost-provision centre console add` accounts.',
    stringify({
      name: 'centre',
      centralBroker: {
        url: `mqtts://${hostInUrl(settings.ip ?? settings.host)}:${settings.port}`,
        ca: paths.caCert,
      },
      console: {
        host: settings.listen ?? '0.0.0.0',
        port: 8443,
        tls: { cert: paths.serverCert, key: paths.serverKey },
      },
    }),
  ].join('\n');
}

function hostInUrl(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

export interface CentreInit {
  host: string;
  ip?: string;
  port?: number;
  certPort?: number;
  listen?: string;
  force?: boolean;
}

/** Create a centre directory: CA, the central broker's certificate, empty password file and ACL. */
export async function initCentre(
  dir: string,
  options: CentreInit,
): Promise<{ centre: Centre; changed: string[] }> {
  if (!hostName.safeParse(options.host).success) {
    throw new OutpostError('USAGE_INVALID', `--host "${options.host}" is not a host name or IP`, {
      hint: 'give the name the sites will dial, e.g. mqtt.ops.example',
    });
  }
  if (options.listen !== undefined && !isIP(options.listen)) {
    throw new OutpostError('USAGE_INVALID', `--listen "${options.listen}" is not an IP address`, {
      hint: 'give the address the listeners bind to, or leave it out to bind every address',
    });
  }
  if (options.ip !== undefined && !isIP(options.ip)) {
    throw new OutpostError('USAGE_INVALID', `--ip "${options.ip}" is not an IP address`, {
      hint: "give the central broker's address as the sites reach it, e.g. 10.1.0.5",
    });
  }
  const paths = centrePaths(dir);
  const wanted = {
    host: options.host,
    ...(options.ip ? { ip: options.ip } : {}),
    port: options.port ?? CENTRE_PASSWORD_PORT,
    certPort: options.certPort ?? CENTRE_CERT_PORT,
    ...(options.listen ? { listen: options.listen } : {}),
  };
  if ((await readIfExists(paths.settings)) !== undefined) {
    const centre = await readCentre(dir);
    const current = centre.settings;
    const same =
      current.host === wanted.host &&
      current.ip === wanted.ip &&
      current.port === wanted.port &&
      current.certPort === wanted.certPort &&
      current.listen === wanted.listen;
    if (same) return { centre, changed: [] };
    if (!options.force) {
      throw new OutpostError('SITE_CONFLICT', `${dir} already holds a centre at ${current.host}`, {
        hint: 'add --force to re-issue the broker certificate for the new address (the CA is kept), then give every site its new kit',
      });
    }
    centre.settings = { ...current, ...wanted };
    await issueBrokerCertificate(centre);
    await writeCentre(centre);
    return { centre, changed: ['broker/server.crt', 'centre.yaml', 'mosquitto/outpost.conf'] };
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createSiteCa('centre');
  await writeFileAtomic(paths.caKey, ca.keyPem, SECRET_MODE);
  await writeFileAtomic(paths.caCert, ca.certPem, PUBLIC_MODE);
  const centre: Centre = { dir, ca, settings: { version: 1, ...wanted, sites: {}, consoles: {} } };
  await issueBrokerCertificate(centre);
  await writeCentre(centre);
  return {
    centre,
    changed: [
      'ca/',
      'broker/',
      'centre.yaml',
      'mosquitto/outpost.conf',
      'mosquitto/passwd',
      'mosquitto/acl',
      'emqx/acl.conf',
      'console/console.yaml',
    ],
  };
}

async function issueBrokerCertificate(centre: Centre): Promise<void> {
  const { host, ip } = centre.settings;
  const server = await issueCertificate(centre.ca, {
    commonName: host,
    site: 'centre',
    kind: 'server',
    hostNames: [...new Set([host, ...(ip ? [ip] : [])])],
  });
  const paths = centrePaths(centre.dir);
  await writeFileAtomic(paths.serverKey, server.keyPem, SECRET_MODE);
  await writeFileAtomic(paths.serverCert, server.certPem, PUBLIC_MODE);
}

/** What a site's tech imports with `outpost-provision bridge set KIT`: sites/NAME/bridge.yaml. */
export const kitSchema = z.strictObject({
  version: z.literal(1),
  site: identityName,
  url: z.string().regex(/^mqtts:\/\//),
  username: z.string().optional(),
  auth: z.enum(['password', 'cert']),
});
export type Kit = z.output<typeof kitSchema>;

export interface AddSite {
  site: string;
  cert?: boolean;
  force?: boolean;
}

/**
 * Give a site a bridge account: a password (hashed into the password file) or a client certificate
 * signed by the centre CA (CN = the account), its ACL entry, and the kit for the site's tech.
 */
export async function addSite(dir: string, options: AddSite): Promise<{ created: boolean; kit: string }> {
  const site = identityName.safeParse(options.site);
  if (!site.success) {
    throw new OutpostError('USAGE_INVALID', `site "${options.site}" is not a valid name`, {
      hint: 'use the site name given to `outpost-provision site init --site`',
    });
  }
  const centre = await readCentre(dir);
  const name = site.data;
  const auth = options.cert ? 'cert' : 'password';
  const kitDir = centrePaths(dir).kit(name);
  const existing = centre.settings.sites[name];
  if (existing) {
    if (existing.auth === auth && !options.force) return { created: false, kit: kitDir };
    if (!options.force) {
      throw new OutpostError('SITE_CONFLICT', `site ${name} already has a ${existing.auth} bridge account`, {
        hint: 'add --force to replace it (new credentials: import the new kit on the site and re-bundle its hub)',
      });
    }
  }
  const user = bridgeUser(name);
  await rm(kitDir, { recursive: true, force: true });
  const { host, ip, port, certPort } = centre.settings;
  const address = ip ?? host;
  const url = `mqtts://${address.includes(':') ? `[${address}]` : address}:${auth === 'cert' ? certPort : port}`;
  let hash: string | undefined;
  if (auth === 'password') {
    const password = randomBytes(24).toString('base64url');
    hash = mosquittoHash(password);
    await writeFileAtomic(join(kitDir, 'bridge.password'), `${password}\n`, SECRET_MODE);
  } else {
    const client = await issueCertificate(centre.ca, { commonName: user, site: 'centre', kind: 'client' });
    await writeFileAtomic(join(kitDir, 'client.key'), client.keyPem, SECRET_MODE);
    await writeFileAtomic(join(kitDir, 'client.crt'), client.certPem, PUBLIC_MODE);
  }
  await writeFileAtomic(join(kitDir, 'ca.crt'), centre.ca.certPem, PUBLIC_MODE);
  const kit: Kit = { version: 1, site: name, url, ...(auth === 'password' ? { username: user } : {}), auth };
  await writeFileAtomic(
    join(kitDir, 'bridge.yaml'),
    `# Bridge kit for site ${name}: import with \`outpost-provision bridge set ${kitDir}\` (docs/bridge.md).\n${stringify(kit)}`,
    PUBLIC_MODE,
  );
  centre.settings.sites[name] = { user, auth, ...(hash ? { hash } : {}) };
  await writeCentre(centre);
  return { created: true, kit: kitDir };
}

/** Remove a site's bridge account: its password entry, ACL and kit (reload mosquitto afterwards). */
export async function removeSite(dir: string, site: string): Promise<{ removed: boolean }> {
  const centre = await readCentre(dir);
  const removed = site in centre.settings.sites;
  delete centre.settings.sites[site];
  await rm(centrePaths(dir).kit(site), { recursive: true, force: true });
  if (removed) await writeCentre(centre);
  return { removed };
}

/** A console account at the centre (reads every site): a new random password, returned once. */
export async function addCentreConsole(
  dir: string,
  name: string,
  force = false,
): Promise<{ created: boolean; password?: string }> {
  const parsed = identityName.safeParse(name);
  if (!parsed.success || name.startsWith('site-')) {
    throw new OutpostError('USAGE_INVALID', `console name "${name}" is not valid`, {
      hint: 'use 1–32 lowercase letters, digits or "-", not starting with site- (bridge accounts)',
    });
  }
  const centre = await readCentre(dir);
  if (centre.settings.consoles[name] && !force) return { created: false };
  const password = randomBytes(24).toString('base64url');
  centre.settings.consoles[name] = { hash: mosquittoHash(password) };
  await writeCentre(centre);
  return { created: true, password };
}

/** The sites with a kit in the centre directory. */
export async function kits(dir: string): Promise<string[]> {
  return readdir(join(dir, 'sites')).catch(() => []);
}

/**
 * On the site's side: import a bridge kit (from `centre add-site`) into the site directory, so that
 * the hub's next bundle carries the bridge (config, the centre's CA, the credential).
 */
export async function setBridge(
  siteDir: string,
  kitDir: string,
  force = false,
): Promise<{ changed: boolean }> {
  const kitText = await readIfExists(join(kitDir, 'bridge.yaml'));
  if (kitText === undefined) {
    throw new OutpostError('USAGE_INVALID', `${kitDir} is not a bridge kit (no bridge.yaml)`, {
      hint: 'give the directory `outpost-provision centre add-site NAME` wrote: CENTRE/sites/NAME',
    });
  }
  const parsed = kitSchema.safeParse(parse(kitText));
  if (!parsed.success) {
    throw new OutpostError('USAGE_INVALID', `${join(kitDir, 'bridge.yaml')} is not a valid bridge kit`, {
      hint: 'make the kit again with `outpost-provision centre add-site NAME --force`',
    });
  }
  const kit = parsed.data;
  const site = await readSite(siteDir);
  if (kit.site !== site.settings.site) {
    throw new OutpostError(
      'SITE_CONFLICT',
      `the kit is for site ${kit.site}, this directory holds site ${site.settings.site}`,
      {
        hint: "the centre's ACL lets a bridge publish under its own site only: ask the centre for this site's kit",
      },
    );
  }
  const files: Array<[string, string, number]> = [['ca.crt', sitePaths(siteDir).bridgeCa, PUBLIC_MODE]];
  if (kit.auth === 'password')
    files.push(['bridge.password', sitePaths(siteDir).bridgePassword, SECRET_MODE]);
  else
    files.push(
      ['client.crt', sitePaths(siteDir).bridgeCert, PUBLIC_MODE],
      ['client.key', sitePaths(siteDir).bridgeKey, SECRET_MODE],
    );
  const contents: Array<[string, string, number]> = [];
  for (const [name, target, mode] of files) {
    const content = await readIfExists(join(kitDir, name));
    if (content === undefined) {
      throw new OutpostError('USAGE_INVALID', `${join(kitDir, name)} is missing from the kit`, {
        hint: 'make the kit again with `outpost-provision centre add-site NAME --force`',
      });
    }
    contents.push([target, content, mode]);
  }
  const wanted = { url: kit.url, ...(kit.username ? { username: kit.username } : {}), auth: kit.auth };
  const current = site.settings.bridge;
  const sameSettings = JSON.stringify(current) === JSON.stringify(wanted);
  const sameFiles = (
    await Promise.all(contents.map(async ([target, content]) => (await readIfExists(target)) === content))
  ).every(Boolean);
  if (current && sameSettings && sameFiles) return { changed: false };
  if (current && !force) {
    throw new OutpostError('SITE_CONFLICT', `site ${site.settings.site} already bridges to ${current.url}`, {
      hint: 'add --force to replace it with this kit, then re-bundle the hub',
    });
  }
  await rm(join(siteDir, 'bridge'), { recursive: true, force: true });
  for (const [target, content, mode] of contents) await writeFileAtomic(target, content, mode);
  site.settings.bridge = wanted;
  await writeSettings(site);
  return { changed: true };
}
