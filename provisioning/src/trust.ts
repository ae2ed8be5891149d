// What a tech gives a console machine or a phone so that its browser trusts the site console: the
// site CA in the forms each platform installs (PEM, DER, an Apple configuration profile), its
// fingerprint to compare on the device, and the steps, in one folder (`outpost-provision console
// trust --out DIR`). Only the CA certificate is written: never a key.
import { mkdir } from 'node:fs/promises';
import { X509Certificate, createHash } from 'node:crypto';
import { join } from 'node:path';
import { fingerprint } from '../../daemon/src/tls/pki.js';
import { PUBLIC_MODE, writeFileAtomic } from './files.js';
import { readSite } from './site.js';

/** The console's default port (console.port); the hub's address comes from the site settings. */
const CONSOLE_PORT = 8443;

export interface TrustKit {
  files: string[];
  fingerprint: string;
  url: string;
}

/** A UUID made from the fingerprint, so writing the kit again gives the same profile. */
function stableUuid(seed: string): string {
  const hex = createHash('sha256').update(seed).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`.toUpperCase();
}

function mobileconfig(site: string, der: Buffer, print: string): string {
  const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>PayloadCertificateFileName</key><string>site-ca.cer</string>
      <key>PayloadContent</key><data>${der.toString('base64')}</data>
      <key>PayloadDisplayName</key><string>${escape(`Outpost site CA ${site}`)}</string>
      <key>PayloadIdentifier</key><string>lan.outpost.${escape(site)}.ca</string>
      <key>PayloadType</key><string>com.apple.security.root</string>
      <key>PayloadUUID</key><string>${stableUuid(`${print}/cert`)}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key><string>${escape(`Trusts the Outpost site console of ${site} (CA SHA-256 ${print})`)}</string>
  <key>PayloadDisplayName</key><string>${escape(`Outpost console — ${site}`)}</string>
  <key>PayloadIdentifier</key><string>lan.outpost.${escape(site)}</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>${stableUuid(`${print}/profile`)}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
`;
}

export async function writeTrustKit(siteDir: string, outDir: string): Promise<TrustKit> {
  const { settings, ca } = await readSite(siteDir);
  const der = Buffer.from(new X509Certificate(ca.certPem).raw);
  const print = fingerprint(ca.certPem);
  const pretty = print.toUpperCase().match(/../g)?.join(':') ?? print;
  const host = settings.hub.host;
  const url = `https://${host}:${CONSOLE_PORT}/`;
  const alternative = settings.hub.ip ? ` (or https://${settings.hub.ip}:${CONSOLE_PORT}/)` : '';
  await mkdir(outDir, { recursive: true });
  const files = {
    pem: join(outDir, 'site-ca.crt'),
    der: join(outDir, 'site-ca.cer'),
    apple: join(outDir, 'site-ca.mobileconfig'),
    readme: join(outDir, 'README.txt'),
  };
  await writeFileAtomic(files.pem, ca.certPem, PUBLIC_MODE);
  await writeFileAtomic(files.der, der, PUBLIC_MODE);
  await writeFileAtomic(files.apple, mobileconfig(settings.site, der, print), PUBLIC_MODE);
  await writeFileAtomic(
    files.readme,
    `Outpost site console of ${settings.site}: ${url}${alternative}

Browsers must trust the site's certificate authority (CA) before they open the console. Install it
once per device, then check on the device that its SHA-256 fingerprint is:

  ${pretty}

Windows: double-click site-ca.cer > Install Certificate > Local Machine > "Trusted Root Certification
  Authorities". Chrome and Edge use it; Firefox: Settings > Privacy & Security > Certificates > View
  Certificates > Authorities > Import site-ca.crt, tick "trust this CA to identify websites".
macOS: open site-ca.mobileconfig (System Settings > Privacy & Security > Profiles > Install), or
  double-click site-ca.crt, then in Keychain Access set it to "Always Trust".
Linux (Debian, Ubuntu): sudo cp site-ca.crt /usr/local/share/ca-certificates/outpost-${settings.site}.crt
  && sudo update-ca-certificates. Chromium and Firefox keep their own store: import site-ca.crt under
  Settings > Privacy and security > Security > Manage certificates > Authorities.
Android: Settings > Security > Encryption & credentials > Install a certificate > CA certificate >
  site-ca.cer.
iPhone, iPad: open site-ca.mobileconfig (AirDrop, mail, or a USB transfer), install it under
  Settings > General > VPN & Device Management, then turn it on under Settings > General > About >
  Certificate Trust Settings.

A device that trusts this CA trusts every certificate it signed: install it only on devices of
people who use this site's console, and remove it when a device leaves the site.
`,
    PUBLIC_MODE,
  );
  return { files: Object.values(files), fingerprint: pretty, url };
}
