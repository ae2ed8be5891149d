// The site directory: the field tech's source of truth for one site (docs/provisioning.md, "Site
// directory"). It holds the site CA, the hub's server certificate, the site settings (site.yaml), the
// hub's identities file and each identity's credentials. Every operation here is idempotent: asking for
// what already exists changes nothing; asking for something different refuses unless `force` is given.
//
//   SITE/site.yaml                       settings, devices, cameras and their SRTP master keys (0600)
//   SITE/identities.json                 the hub's identities file, password hashes only (0600)
//   SITE/ca/ca.crt, ca/ca.key            site CA (key 0600)
//   SITE/hub/server.crt, hub/server.key  the hub's TLS server certificate (key 0600)
//   SITE/credentials/NAME/uplink.password  a device's MQTT password: it travels in its bundle (0600)
//   SITE/credentials/NAME/client.crt, client.key  optional client certificate (CN = NAME)
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { OutpostError } from '../../daemon/src/errors.js';
import {
  hashPassword,
  identityName,
  parseIdentities,
  type IdentitiesFile,
  type IdentityRecord,
} from '../../daemon/src/mqtt/identities.js';
import { readIfExists, SECRET_MODE, PUBLIC_MODE, writeFileAtomic } from './files.js';
import { createSiteCa, issueCertificate, type KeyAndCertificate } from '../../daemon/src/tls/pki.js';

/** AES-CM-128 SRTP master key (16 bytes) + master salt (14 bytes), base64: what SDES/srtpenc take. */
export const SRTP_KEY_BYTES = 30;
/** First RTP port handed out at the SFU; each camera gets an even port (RTCP on the next odd one). */
export const FIRST_RTP_PORT = 5004;

const hostName = z.union([z.ipv4(), z.ipv6(), z.hostname()], {
  error: 'give an IP address or a host name, e.g. 192.168.10.2 or hub.site.lan',
});

const cameraEntry = z.strictObject({
  name: identityName,
  /** UDP port at the SFU for this camera's RTP; unique on the site. */
  rtpPort: z.int().min(1024).max(65534),
  /** 30 random bytes, base64: SRTP master key + salt for AES_CM_128 (RFC 3711 §8.2, RFC 4568 §6.1). */
  srtpKey: z.base64().refine((key) => Buffer.from(key, 'base64').length === SRTP_KEY_BYTES, {
    error: `an SRTP master key is ${SRTP_KEY_BYTES} bytes, base64`,
  }),
});

const deviceEntry = z.strictObject({
  role: z.enum(['hub', 'camera']),
  cameras: z.array(cameraEntry).max(8),
});

export const siteSettingsSchema = z.strictObject({
  version: z.literal(1, { error: 'site.yaml version must be 1' }),
  site: identityName,
  hub: z.strictObject({
    /** The hub's device (identity) name. */
    device: identityName,
    /** Host name that boxes and consoles use for the hub (in its certificate). */
    host: hostName,
    /** The hub's LAN address: in its certificate, and what cameras dial when given. */
    ip: z.union([z.ipv4(), z.ipv6()]).optional(),
  }),
  sfu: z.strictObject({ host: hostName }),
  devices: z.record(identityName, deviceEntry),
  /** The hub's bridge to an operations centre (`bridge set KIT`); its files are under bridge/. */
  bridge: z
    .strictObject({
      url: z.string().regex(/^mqtts:\/\//),
      username: z.string().optional(),
      auth: z.enum(['password', 'cert']),
    })
    .optional(),
});

export type SiteSettings = z.output<typeof siteSettingsSchema>;
export type DeviceEntry = SiteSettings['devices'][string];

export interface Site {
  dir: string;
  settings: SiteSettings;
  identities: IdentitiesFile;
  ca: KeyAndCertificate;
}

export const sitePaths = (dir: string) => ({
  settings: join(dir, 'site.yaml'),
  identities: join(dir, 'identities.json'),
  caCert: join(dir, 'ca', 'ca.crt'),
  caKey: join(dir, 'ca', 'ca.key'),
  serverCert: join(dir, 'hub', 'server.crt'),
  serverKey: join(dir, 'hub', 'server.key'),
  credentials: (name: string) => join(dir, 'credentials', name),
  password: (name: string) => join(dir, 'credentials', name, 'uplink.password'),
  clientCert: (name: string) => join(dir, 'credentials', name, 'client.crt'),
  clientKey: (name: string) => join(dir, 'credentials', name, 'client.key'),
  bridgeCa: join(dir, 'bridge', 'ca.crt'),
  bridgePassword: join(dir, 'bridge', 'bridge.password'),
  bridgeCert: join(dir, 'bridge', 'client.crt'),
  bridgeKey: join(dir, 'bridge', 'client.key'),
});

/** A new random password: 24 bytes, base64url (32 characters, no shell-special characters). */
export function newPassword(): string {
  return randomBytes(24).toString('base64url');
}

export function newSrtpKey(): string {
  return randomBytes(SRTP_KEY_BYTES).toString('base64');
}

function checkName(value: string, what: string): string {
  const result = identityName.safeParse(value);
  if (!result.success) {
    throw new OutpostError('USAGE_INVALID', `${what} "${value}" is not a valid name`, {
      hint: 'use 1–32 lowercase letters, digits or "-", starting with a letter or digit',
    });
  }
  return value;
}

function problemsOf(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`).join('; ');
}

/** Read the whole site directory, checking each part; throws naming the file and the fix. */
export async function readSite(dir: string): Promise<Site> {
  const paths = sitePaths(dir);
  const settingsText = await readIfExists(paths.settings);
  if (settingsText === undefined) {
    throw new OutpostError('SITE_MISSING', `${dir} is not a site directory (no site.yaml)`, {
      hint: 'create it with `outpost-provision site init DIR --site NAME`, or pass the right --dir',
    });
  }
  let raw: unknown;
  try {
    raw = parse(settingsText);
  } catch (error) {
    throw new OutpostError('SITE_INVALID', `${paths.settings} is not valid YAML`, {
      hint: 'restore it from your backup of the site directory',
      cause: error,
    });
  }
  const parsed = siteSettingsSchema.safeParse(raw);
  if (!parsed.success) {
    throw new OutpostError('SITE_INVALID', `${paths.settings}: ${problemsOf(parsed.error)}`, {
      hint: 'fix the file by hand or restore it from your backup of the site directory',
    });
  }
  const identitiesText = await readIfExists(paths.identities);
  const caCert = await readIfExists(paths.caCert);
  const caKey = await readIfExists(paths.caKey);
  for (const [file, text] of [
    [paths.identities, identitiesText],
    [paths.caCert, caCert],
    [paths.caKey, caKey],
  ] as const) {
    if (text === undefined) {
      throw new OutpostError('SITE_INVALID', `${file} is missing from the site directory`, {
        hint: 'restore it from your backup; without the CA key no box of this site can be provisioned',
      });
    }
  }
  const identities = parseIdentities(identitiesText!, paths.identities);
  return { dir, settings: parsed.data, identities, ca: { certPem: caCert!, keyPem: caKey! } };
}

export async function writeSettings(site: Site): Promise<void> {
  const header =
    '# Outpost site settings, written by outpost-provision (docs/provisioning.md). Holds SRTP keys: keep 0600.\n';
  await writeFileAtomic(sitePaths(site.dir).settings, header + stringify(site.settings), SECRET_MODE);
}

async function writeIdentities(site: Site): Promise<void> {
  await writeFileAtomic(
    sitePaths(site.dir).identities,
    `${JSON.stringify(site.identities, null, 2)}\n`,
    SECRET_MODE,
  );
}

export interface InitOptions {
  site: string;
  /** Hub host name; its first label is the hub's device name. Default `hub`. */
  hubHost?: string;
  hubIp?: string;
  sfuHost?: string;
  hubCameras?: readonly string[];
  force?: boolean;
}

export interface InitResult {
  site: Site;
  /** What was created or replaced; empty when the site already existed as asked (a no-op). */
  changed: string[];
}

/**
 * Create a site directory (CA, hub certificate, settings, identities with the hub's own identity).
 * The CA is never replaced: a new CA means a new site directory. `force` re-issues the hub certificate
 * and rewrites the settings when the hub's address changed.
 */
export async function initSite(dir: string, options: InitOptions): Promise<InitResult> {
  const siteName = checkName(options.site, 'site');
  const hubHost = options.hubHost ?? 'hub';
  if (!hostName.safeParse(hubHost).success || isIP(hubHost)) {
    throw new OutpostError('USAGE_INVALID', `--hub-host "${hubHost}" is not a host name`, {
      hint: 'give the hub a name such as hub or hub.plant.lan; its address goes in --hub-ip',
    });
  }
  const hubDevice = checkName(hubHost.split('.')[0] ?? '', 'the hub host name’s first label');
  if (options.hubIp !== undefined && !isIP(options.hubIp)) {
    throw new OutpostError('USAGE_INVALID', `--hub-ip "${options.hubIp}" is not an IP address`, {
      hint: 'give the hub’s fixed LAN address, e.g. 192.168.10.2',
    });
  }
  const sfuHost = options.sfuHost ?? options.hubIp ?? hubHost;
  if (!hostName.safeParse(sfuHost).success) {
    throw new OutpostError('USAGE_INVALID', `--sfu-host "${sfuHost}" is not a host name or IP`, {
      hint: 'give the SFU’s LAN address, e.g. 192.168.10.3',
    });
  }
  const hubCameras = (options.hubCameras ?? ['cam0']).map((cam) => checkName(cam, 'camera'));
  const paths = sitePaths(dir);
  const wanted = { device: hubDevice, host: hubHost, ...(options.hubIp ? { ip: options.hubIp } : {}) };

  if ((await readIfExists(paths.settings)) !== undefined) {
    const site = await readSite(dir);
    const current = site.settings;
    const same =
      current.site === siteName &&
      current.hub.device === wanted.device &&
      current.hub.host === wanted.host &&
      current.hub.ip === wanted.ip &&
      (options.sfuHost === undefined || current.sfu.host === sfuHost);
    if (same) return { site, changed: [] };
    if (current.site !== siteName) {
      throw new OutpostError('SITE_CONFLICT', `${dir} already holds site "${current.site}"`, {
        hint: 'use another directory for a new site; a site’s CA is never replaced',
      });
    }
    if (!options.force) {
      throw new OutpostError(
        'SITE_CONFLICT',
        `${dir} already holds site "${siteName}" with hub ${current.hub.host}${current.hub.ip ? ` (${current.hub.ip})` : ''}`,
        { hint: 'add --force to re-issue the hub certificate for the new address (the CA is kept)' },
      );
    }
    if (current.hub.device !== hubDevice) {
      throw new OutpostError(
        'SITE_CONFLICT',
        `the hub is device "${current.hub.device}", not "${hubDevice}"`,
        {
          hint: 'keep the hub host name’s first label, or start a new site directory',
        },
      );
    }
    site.settings = { ...current, hub: wanted, sfu: { host: options.sfuHost ?? current.sfu.host } };
    await issueServerCertificate(site);
    await writeSettings(site);
    return { site, changed: ['hub/server.crt', 'hub/server.key', 'site.yaml'] };
  }

  if ((await readIfExists(paths.caKey)) !== undefined) {
    throw new OutpostError('SITE_CONFLICT', `${paths.caKey} exists but ${paths.settings} does not`, {
      hint: 'this directory is damaged: restore site.yaml from your backup, or use an empty directory',
    });
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createSiteCa(siteName);
  await writeFileAtomic(paths.caKey, ca.keyPem, SECRET_MODE);
  await writeFileAtomic(paths.caCert, ca.certPem, PUBLIC_MODE);
  const site: Site = {
    dir,
    ca,
    settings: { version: 1, site: siteName, hub: wanted, sfu: { host: sfuHost }, devices: {} },
    identities: { version: 1, site: siteName, identities: [] },
  };
  await issueServerCertificate(site);
  await writeSettings(site);
  await writeIdentities(site);
  await addIdentity(dir, { name: hubDevice, kind: 'hub', cameras: hubCameras });
  return {
    site: await readSite(dir),
    changed: ['ca/ca.crt', 'ca/ca.key', 'hub/server.crt', 'hub/server.key', 'site.yaml', 'identities.json'],
  };
}

async function issueServerCertificate(site: Site): Promise<void> {
  const { hub } = site.settings;
  const hostNames = [...new Set([hub.host, hub.device, ...(hub.ip ? [hub.ip] : [])])];
  const server = await issueCertificate(site.ca, {
    commonName: hub.host,
    site: site.settings.site,
    kind: 'server',
    hostNames,
  });
  const paths = sitePaths(site.dir);
  await writeFileAtomic(paths.serverKey, server.keyPem, SECRET_MODE);
  await writeFileAtomic(paths.serverCert, server.certPem, PUBLIC_MODE);
}

export type IdentityKind = 'hub' | 'camera' | 'console' | 'staff';

export interface AddOptions {
  name: string;
  kind: IdentityKind;
  /** Devices only: camera names on this box. */
  cameras?: readonly string[];
  /** Also issue a client certificate (CN = name). */
  cert?: boolean;
  /** Write the new password to this file (0600); an existing file is replaced only with `force`. */
  passwordFile?: string;
  force?: boolean;
}

export interface AddResult {
  /** False when the identity already existed exactly as asked (nothing changed). */
  created: boolean;
  /** The new password, plain; present only when one was made. */
  password?: string;
}

const roleOf = (kind: IdentityKind): IdentityRecord['role'] =>
  kind === 'hub' || kind === 'camera' ? 'device' : kind;

/** Add a device, console or staff identity with a new random password (and optional client certificate). */
export async function addIdentity(dir: string, options: AddOptions): Promise<AddResult> {
  const name = checkName(options.name, 'name');
  const site = await readSite(dir);
  const isDevice = options.kind === 'hub' || options.kind === 'camera';
  const cameras = isDevice
    ? [...new Set((options.cameras ?? ['cam0']).map((c) => checkName(c, 'camera')))]
    : [];
  if (cameras.length > 8) {
    throw new OutpostError('USAGE_INVALID', `${cameras.length} cameras given; a box runs at most 8`, {
      hint: 'list at most 8 camera names in --cameras',
    });
  }
  if (options.kind === 'hub' && site.settings.hub.device !== name) {
    throw new OutpostError(
      'SITE_CONFLICT',
      `site ${site.settings.site} already has hub "${site.settings.hub.device}"`,
      {
        hint: 'a site has one hub (created by `site init`); add this box with --role camera',
      },
    );
  }
  const existing = site.identities.identities.find((identity) => identity.name === name);
  const existingDevice = site.settings.devices[name];
  const cert = options.cert === true;
  if (existing) {
    const sameKind =
      existing.role === roleOf(options.kind) && (!isDevice || existingDevice?.role === options.kind);
    const sameCameras =
      !isDevice || JSON.stringify(existingDevice?.cameras.map((c) => c.name)) === JSON.stringify(cameras);
    if (sameKind && sameCameras && existing.certificate === cert && !options.force) return { created: false };
    if (!options.force) {
      throw new OutpostError(
        'SITE_CONFLICT',
        `"${name}" already exists on site ${site.settings.site} as ${describe(existing, existingDevice)}`,
        {
          hint: 'add --force to replace it (new password and certificate; re-bundle the box and the hub), or pick another name',
        },
      );
    }
  }

  if (options.passwordFile && !options.force && (await readIfExists(options.passwordFile)) !== undefined) {
    throw new OutpostError('SITE_CONFLICT', `--password-file ${options.passwordFile} exists`, {
      hint: 'give another file, or add --force to overwrite it (and make a new password)',
    });
  }
  const password = newPassword();
  const record: IdentityRecord = {
    name,
    role: roleOf(options.kind),
    password: await hashPassword(password),
    certificate: cert,
  };
  site.identities.identities = [...site.identities.identities.filter((i) => i.name !== name), record];
  const paths = sitePaths(dir);
  await rm(paths.credentials(name), { recursive: true, force: true });
  if (isDevice) {
    const kept = new Map((existingDevice?.cameras ?? []).map((cam) => [cam.name, cam]));
    const used = new Set(
      Object.entries(site.settings.devices)
        .filter(([device]) => device !== name)
        .flatMap(([, entry]) => entry.cameras.map((cam) => cam.rtpPort)),
    );
    const entries = cameras.map((camName) => {
      const old = kept.get(camName);
      if (old) {
        used.add(old.rtpPort);
        return old;
      }
      let port = FIRST_RTP_PORT;
      while (used.has(port)) port += 2;
      used.add(port);
      return { name: camName, rtpPort: port, srtpKey: newSrtpKey() };
    });
    site.settings.devices[name] = { role: options.kind as 'hub' | 'camera', cameras: entries };
    // A device's password travels in its bundle, so the site directory keeps it (0600).
    await writeFileAtomic(paths.password(name), `${password}\n`, SECRET_MODE);
  } else {
    delete site.settings.devices[name];
  }
  if (cert) {
    const client = await issueCertificate(site.ca, {
      commonName: name,
      site: site.settings.site,
      kind: 'client',
    });
    await writeFileAtomic(paths.clientKey(name), client.keyPem, SECRET_MODE);
    await writeFileAtomic(paths.clientCert(name), client.certPem, PUBLIC_MODE);
  }
  if (options.passwordFile) await writeFileAtomic(options.passwordFile, `${password}\n`, SECRET_MODE);
  await writeSettings(site);
  await writeIdentities(site);
  return { created: true, password };
}

function describe(identity: IdentityRecord, device: DeviceEntry | undefined): string {
  const what = device
    ? `${device.role} with cameras ${device.cameras.map((c) => c.name).join(',') || 'none'}`
    : identity.role;
  return identity.certificate ? `${what} and a client certificate` : what;
}

/** Remove an identity: the hub refuses it once it has the new identities file (SIGHUP reload). */
export async function revokeIdentity(dir: string, nameArg: string): Promise<{ removed: boolean }> {
  const name = checkName(nameArg, 'name');
  const site = await readSite(dir);
  if (name === site.settings.hub.device) {
    throw new OutpostError('SITE_CONFLICT', `"${name}" is the site’s hub and cannot be revoked`, {
      hint: 'to move the hub, re-run `site init --force` with its new address instead',
    });
  }
  const before = site.identities.identities.length;
  site.identities.identities = site.identities.identities.filter((identity) => identity.name !== name);
  const removed = before !== site.identities.identities.length || name in site.settings.devices;
  delete site.settings.devices[name];
  await rm(sitePaths(dir).credentials(name), { recursive: true, force: true });
  if (removed) {
    await writeSettings(site);
    await writeIdentities(site);
  }
  return { removed };
}
