// Device bundles: one signed JSON file that carries everything a box needs under /etc/outpost
// (docs/provisioning.md, "Bundle format"). `makeBundle` builds one from the site directory and checks
// the config with the daemon's own parser before signing; `openBundle` is the one boundary check, used
// by `bundle verify` on the laptop and by first boot on the box: a bundle is trusted only if it parses,
// its CA is the expected one, the CA's signature covers every byte of every file, and the config and
// identities inside pass the daemon's schemas.
//
// Signed bytes (UTF-8), ECDSA P-256 with SHA-256, DER signature:
//   JSON.stringify(["outpost-bundle/1", site, device, role, createdAt, caSha256Hex,
//                   [[path, mode, sha256HexOfContent], …]])
// Arrays of strings only, so the serialisation is canonical without a canonical-JSON library.
import { createHash, sign, verify, X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import { z } from 'zod';
import { parseConfig } from '../../daemon/src/config/load.js';
import { formatConfigError } from '../../daemon/src/config/report.js';
import type { Config } from '../../daemon/src/config/schema.js';
import { ConfigError, OutpostError } from '../../daemon/src/errors.js';
import { identityName, parseIdentities, type IdentitiesFile } from '../../daemon/src/mqtt/identities.js';
import { readIfExists } from './files.js';
import { fingerprint, normaliseFingerprint } from '../../daemon/src/tls/pki.js';
import { readSite, sitePaths, type Site } from './site.js';

export const BUNDLE_FORMAT = 'outpost-bundle/1';

/** Where things are installed on the box; the only paths a bundle may carry. */
export const INSTALLED = {
  config: '/etc/outpost/outpost.yaml',
  identities: '/etc/outpost/identities.json',
  password: '/etc/outpost/uplink.password',
  ca: '/etc/outpost/tls/ca.crt',
  serverCert: '/etc/outpost/tls/server.crt',
  serverKey: '/etc/outpost/tls/server.key',
  clientCert: '/etc/outpost/tls/client.crt',
  clientKey: '/etc/outpost/tls/client.key',
  bridgeCa: '/etc/outpost/bridge/ca.crt',
  bridgePassword: '/etc/outpost/bridge/bridge.password',
  bridgeCert: '/etc/outpost/bridge/client.crt',
  bridgeKey: '/etc/outpost/bridge/client.key',
} as const;

const ALLOWED_PATHS: ReadonlySet<string> = new Set(Object.values(INSTALLED));
/** Secrets 0600; everything else 0640 (group outpost may read, others nothing). */
const SECRET_PATHS: ReadonlySet<string> = new Set([
  INSTALLED.identities,
  INSTALLED.password,
  INSTALLED.serverKey,
  INSTALLED.clientKey,
  INSTALLED.bridgePassword,
  INSTALLED.bridgeKey,
]);
export const modeFor = (path: string): number => (SECRET_PATHS.has(path) ? 0o600 : 0o640);

export const MQTTS_PORT = 8883;
export const WSS_PORT = 8884;

const bundleSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT, { error: `not an Outpost bundle (format is not ${BUNDLE_FORMAT})` }),
  site: identityName,
  device: identityName,
  role: z.enum(['hub', 'camera']),
  createdAt: z.iso.datetime(),
  caCertificate: z.string().startsWith('-----BEGIN CERTIFICATE-----'),
  files: z
    .array(
      z.strictObject({
        path: z.string(),
        mode: z.enum(['0600', '0640']),
        base64: z.base64(),
      }),
    )
    .min(1),
  signature: z.base64(),
});

export type BundleEnvelope = z.output<typeof bundleSchema>;

export interface BundleFile {
  path: string;
  mode: number;
  content: Buffer;
}

export interface OpenedBundle {
  envelope: BundleEnvelope;
  files: BundleFile[];
  config: Config;
  caFingerprint: string;
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

function signedBytes(envelope: Omit<BundleEnvelope, 'signature'>, caSha256: string): Buffer {
  const files = envelope.files.map((file) => [
    file.path,
    file.mode,
    sha256(Buffer.from(file.base64, 'base64')),
  ]);
  return Buffer.from(
    JSON.stringify([
      envelope.format,
      envelope.site,
      envelope.device,
      envelope.role,
      envelope.createdAt,
      caSha256,
      files,
    ]),
    'utf8',
  );
}

/** The daemon config a device runs with: see docs/provisioning.md for each key's origin. */
export function deviceConfig(site: Site, device: string): Record<string, unknown> {
  const entry = site.settings.devices[device];
  if (!entry) throw new Error(`no device ${device}`);
  const { hub } = site.settings;
  const hubAddress = hub.ip ?? hub.host;
  const uplinkHost = hubAddress.includes(':') ? `[${hubAddress}]` : hubAddress;
  const config: Record<string, unknown> = {
    site: site.settings.site,
    device,
    role: entry.role,
    dataDir: '/var/lib/outpost',
  };
  if (entry.role === 'hub') {
    config.broker = {
      tls: { ca: INSTALLED.ca, cert: INSTALLED.serverCert, key: INSTALLED.serverKey },
      mqtts: { host: '0.0.0.0', port: MQTTS_PORT },
      wss: { host: '0.0.0.0', port: WSS_PORT },
      identitiesFile: INSTALLED.identities,
    };
    // The hub's own client talks to its own broker over loopback, as identity `device`.
    config.uplink = { url: 'mqtt://127.0.0.1:1883', username: device, passwordFile: INSTALLED.password };
    // The bridge to the operations centre (`bridge set KIT`): topics and store keep their defaults.
    const bridge = site.settings.bridge;
    if (bridge) {
      config.bridge = {
        url: bridge.url,
        ca: INSTALLED.bridgeCa,
        ...(bridge.auth === 'password'
          ? { username: bridge.username, passwordFile: INSTALLED.bridgePassword }
          : { cert: INSTALLED.bridgeCert, key: INSTALLED.bridgeKey }),
      };
    }
  } else {
    const withCertificate = site.identities.identities.some(
      (record) => record.name === device && record.certificate,
    );
    config.uplink = {
      url: `mqtts://${uplinkHost}:${MQTTS_PORT}`,
      ca: INSTALLED.ca,
      username: device,
      passwordFile: INSTALLED.password,
      // The client certificate is presented too; the password remains the identity's proof.
      ...(withCertificate ? { cert: INSTALLED.clientCert, key: INSTALLED.clientKey } : {}),
    };
  }
  config.sfu = { host: site.settings.sfu.host };
  config.cameras = entry.cameras.map((cam) => ({ name: cam.name, rtp: { port: cam.rtpPort } }));
  return config;
}

/** Build and sign a device's bundle from the site directory. */
export async function makeBundle(siteDir: string, device: string, now = new Date()): Promise<string> {
  const site = await readSite(siteDir);
  const entry = site.settings.devices[device];
  if (!entry) {
    const known = Object.keys(site.settings.devices).join(', ') || 'none';
    throw new OutpostError('USAGE_INVALID', `site ${site.settings.site} has no device "${device}"`, {
      hint: `add it first (outpost-provision device add ${device} --role camera); devices: ${known}`,
    });
  }
  const paths = sitePaths(siteDir);
  const configText =
    `# /etc/outpost/outpost.yaml for ${device} on site ${site.settings.site}, written by outpost-provision.\n` +
    stringify(deviceConfig(site, device));
  try {
    parseConfig(configText, `the config made for ${device}`);
  } catch (error) {
    throw new OutpostError(
      'BUNDLE_CONTENT_INVALID',
      `the daemon would refuse the config made for ${device}: ${error instanceof ConfigError ? formatConfigError(error) : String(error)}`,
      { hint: 'this is a bug in outpost-provision: report it with site.yaml (SRTP keys removed)' },
    );
  }
  const password = await readIfExists(paths.password(device));
  if (password === undefined) {
    throw new OutpostError('SITE_INVALID', `${paths.password(device)} is missing`, {
      hint: `make new credentials with \`outpost-provision device add ${device} --role ${entry.role} --force\``,
    });
  }
  const files: Array<{ path: string; content: string }> = [
    { path: INSTALLED.config, content: configText },
    { path: INSTALLED.ca, content: site.ca.certPem },
    { path: INSTALLED.password, content: password },
  ];
  if (entry.role === 'hub') {
    files.push({ path: INSTALLED.identities, content: `${JSON.stringify(site.identities, null, 2)}\n` });
    for (const [path, file] of [
      [INSTALLED.serverCert, paths.serverCert],
      [INSTALLED.serverKey, paths.serverKey],
    ] as const) {
      const content = await readIfExists(file);
      if (content === undefined) {
        throw new OutpostError('SITE_INVALID', `${file} is missing`, {
          hint: 're-issue it with `outpost-provision site init DIR --site NAME … --force` (the CA is kept)',
        });
      }
      files.push({ path, content });
    }
  }
  if (entry.role === 'hub' && site.settings.bridge) {
    const wanted: Array<readonly [string, string]> = [
      [INSTALLED.bridgeCa, paths.bridgeCa],
      ...(site.settings.bridge.auth === 'password'
        ? [[INSTALLED.bridgePassword, paths.bridgePassword] as const]
        : [
            [INSTALLED.bridgeCert, paths.bridgeCert] as const,
            [INSTALLED.bridgeKey, paths.bridgeKey] as const,
          ]),
    ];
    for (const [path, file] of wanted) {
      const content = await readIfExists(file);
      if (content === undefined) {
        throw new OutpostError('SITE_INVALID', `${file} is missing`, {
          hint: 'import the bridge kit again with `outpost-provision bridge set KIT_DIR`',
        });
      }
      files.push({ path, content });
    }
  }
  const identity = site.identities.identities.find((record) => record.name === device);
  if (identity?.certificate) {
    for (const [path, file] of [
      [INSTALLED.clientCert, paths.clientCert(device)],
      [INSTALLED.clientKey, paths.clientKey(device)],
    ] as const) {
      const content = await readIfExists(file);
      if (content !== undefined) files.push({ path, content });
    }
  }
  const unsigned: Omit<BundleEnvelope, 'signature'> = {
    format: BUNDLE_FORMAT,
    site: site.settings.site,
    device,
    role: entry.role,
    createdAt: now.toISOString(),
    caCertificate: site.ca.certPem,
    files: files.map((file) => ({
      path: file.path,
      mode: modeFor(file.path) === 0o600 ? '0600' : '0640',
      base64: Buffer.from(file.content, 'utf8').toString('base64'),
    })),
  };
  return signBundle(unsigned, site.ca.keyPem);
}

/** Sign an envelope with the site CA key (its `caCertificate` must be that CA's): the bundle's text. */
export function signBundle(unsigned: Omit<BundleEnvelope, 'signature'>, caKeyPem: string): string {
  const signature = sign('sha256', signedBytes(unsigned, fingerprint(unsigned.caCertificate)), caKeyPem);
  return `${JSON.stringify({ ...unsigned, signature: signature.toString('base64') }, null, 1)}\n`;
}

/** What a bundle must be signed by: a CA certificate, a CA fingerprint, or (first use) its own CA. */
export type Trust = { caPem: string } | { fingerprint: string } | { firstUse: true };

/** Parse, authenticate and check a bundle. Throws a coded OutpostError naming the problem. */
export function openBundle(text: string, source: string, trust: Trust): OpenedBundle {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new OutpostError('BUNDLE_MALFORMED', `${source} is not a complete bundle (not valid JSON)`, {
      hint: 'it is probably truncated: copy it again with `outpost-provision bundle NAME --out PATH` and eject the card cleanly',
      cause: error,
    });
  }
  const parsed = bundleSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(bundle)'}: ${i.message}`);
    throw new OutpostError('BUNDLE_MALFORMED', `${source} is not a valid bundle: ${problems.join('; ')}`, {
      hint: 'write it again with `outpost-provision bundle NAME --out PATH`',
    });
  }
  const envelope = parsed.data;

  let ca: X509Certificate;
  try {
    ca = new X509Certificate(envelope.caCertificate);
  } catch (error) {
    throw new OutpostError('BUNDLE_MALFORMED', `${source}: its CA certificate cannot be read`, {
      hint: 'write the bundle again with `outpost-provision bundle`',
      cause: error,
    });
  }
  const caFingerprint = fingerprint(envelope.caCertificate);
  if ('caPem' in trust) {
    const expected = fingerprint(trust.caPem);
    if (expected !== caFingerprint) {
      throw new OutpostError(
        'BUNDLE_UNTRUSTED',
        `${source} was made by another site CA (fingerprint ${caFingerprint}), not the trusted one (${expected})`,
        {
          hint: 'use the bundle made from this site’s directory; a box provisioned for one site refuses another’s',
        },
      );
    }
  } else if ('fingerprint' in trust) {
    const expected = normaliseFingerprint(trust.fingerprint);
    if (expected !== caFingerprint) {
      throw new OutpostError(
        'BUNDLE_UNTRUSTED',
        `${source}'s CA fingerprint ${caFingerprint} is not the expected ${expected}`,
        { hint: 'check the fingerprint (`outpost-provision site show DIR` prints it) or the bundle’s site' },
      );
    }
  }
  if (!ca.ca || !ca.verify(ca.publicKey) || ca.publicKey.asymmetricKeyType !== 'ec') {
    throw new OutpostError('BUNDLE_UNTRUSTED', `${source}: its CA certificate is not a self-signed EC CA`, {
      hint: 'write the bundle again with `outpost-provision bundle`',
    });
  }
  const data = signedBytes(envelope, caFingerprint);
  if (!verify('sha256', data, ca.publicKey, Buffer.from(envelope.signature, 'base64'))) {
    throw new OutpostError(
      'BUNDLE_SIGNATURE_INVALID',
      `${source}: the site CA's signature does not match its content (changed or damaged after it was made)`,
      { hint: 'write it again with `outpost-provision bundle NAME --out PATH`; never edit a bundle by hand' },
    );
  }

  // Signed by the trusted CA from here on; still check the content as the daemon would.
  const files: BundleFile[] = [];
  const seen = new Set<string>();
  for (const file of envelope.files) {
    const mode = Number.parseInt(file.mode, 8);
    if (!ALLOWED_PATHS.has(file.path) || seen.has(file.path) || mode !== modeFor(file.path)) {
      throw new OutpostError(
        'BUNDLE_CONTENT_INVALID',
        `${source}: file ${file.path} (${file.mode}) is not allowed`,
        {
          hint: `a bundle holds only ${[...ALLOWED_PATHS].join(', ')}, once each, secrets 0600`,
        },
      );
    }
    seen.add(file.path);
    files.push({ path: file.path, mode, content: Buffer.from(file.base64, 'base64') });
  }
  const text0 = (path: string): string | undefined =>
    files.find((file) => file.path === path)?.content.toString('utf8');
  const configText = text0(INSTALLED.config);
  if (configText === undefined || text0(INSTALLED.ca) !== envelope.caCertificate) {
    throw new OutpostError('BUNDLE_CONTENT_INVALID', `${source}: config or CA certificate missing`, {
      hint: 'write the bundle again with `outpost-provision bundle`',
    });
  }
  let config: Config;
  try {
    config = parseConfig(configText, `${source}:${INSTALLED.config}`);
  } catch (error) {
    throw new OutpostError(
      'BUNDLE_CONTENT_INVALID',
      error instanceof ConfigError ? formatConfigError(error) : String(error),
      { hint: 'the daemon would refuse this config: make the bundle with a matching outpost-provision' },
    );
  }
  if (config.site !== envelope.site || config.device !== envelope.device || config.role !== envelope.role) {
    throw new OutpostError(
      'BUNDLE_CONTENT_INVALID',
      `${source}: its config is for ${config.device} (${config.role}) on ${config.site}, the bundle for ${envelope.device} (${envelope.role}) on ${envelope.site}`,
      { hint: 'write the bundle again with `outpost-provision bundle`' },
    );
  }
  const identitiesText = text0(INSTALLED.identities);
  if (envelope.role === 'hub') {
    if (identitiesText === undefined || !text0(INSTALLED.serverCert) || !text0(INSTALLED.serverKey)) {
      throw new OutpostError(
        'BUNDLE_CONTENT_INVALID',
        `${source}: a hub bundle needs identities and TLS files`,
        {
          hint: 'write the bundle again with `outpost-provision bundle`',
        },
      );
    }
    let identities: IdentitiesFile;
    try {
      identities = parseIdentities(identitiesText, `${source}:${INSTALLED.identities}`);
    } catch (error) {
      throw new OutpostError('BUNDLE_CONTENT_INVALID', (error as Error).message, {
        hint: 'the broker would refuse these identities: regenerate the site’s identities',
      });
    }
    // The hub's own client logs in to its own broker: without its identity it could never connect.
    const own = identities.identities.find((identity) => identity.name === config.uplink?.username);
    if (identities.site !== envelope.site || own?.password === undefined) {
      throw new OutpostError(
        'BUNDLE_CONTENT_INVALID',
        `${source}: its identities must be for site ${envelope.site} and hold the hub's own identity (${config.uplink?.username ?? 'uplink.username'}) with a password`,
        { hint: 'write the bundle again from the right site directory' },
      );
    }
  }
  for (const path of [INSTALLED.serverCert, INSTALLED.clientCert]) {
    const pem = text0(path);
    if (pem === undefined) continue;
    let ok = false;
    try {
      ok = new X509Certificate(pem).verify(ca.publicKey);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new OutpostError('BUNDLE_CONTENT_INVALID', `${source}: ${path} is not signed by the site CA`, {
        hint: 'write the bundle again from the right site directory',
      });
    }
  }
  return { envelope, files, config, caFingerprint };
}

/** The files a bundle installs, for comparing two bundles (or a bundle with what is installed). */
export function sameFiles(a: readonly BundleFile[], b: readonly BundleFile[]): boolean {
  if (a.length !== b.length) return false;
  const byPath = new Map(b.map((file) => [file.path, file]));
  return a.every((file) => {
    const other = byPath.get(file.path);
    return other !== undefined && other.mode === file.mode && other.content.equals(file.content);
  });
}
