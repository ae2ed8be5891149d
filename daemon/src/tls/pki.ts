// The site's certificates: the site CA, the hub's server certificate and client certificates, all
// ECDSA P-256 with SHA-256. `outpost-provision` makes them; the daemon uses the same code only for the
// console's development certificate on loopback (console/dev-cert.ts, loaded only then). The X.509 encoding is @peculiar/x509 on Node's WebCrypto (the only file
// that imports it); keys are made, exported and used for signing by Node's own crypto, so no ASN.1 is
// written by hand here.
//
// Validity: every certificate starts BACKDATE_DAYS before it is issued, because a Raspberry Pi has no
// battery clock and an isolated site has no public NTP: a box that boots with its clock at the image's
// build date (or 1970 until fake-hwclock runs) must still accept the hub and be accepted by it
// (DESIGN.md, "Time without the internet").
import 'reflect-metadata'; // tsyringe, under @peculiar/x509, needs the Reflect metadata API first
import * as x509 from '@peculiar/x509';
import {
  createHash,
  createPrivateKey,
  KeyObject,
  randomBytes,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { isIP } from 'node:net';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

/** How far back notBefore is set: one year covers a Pi whose clock stopped at the image's build date. */
export const BACKDATE_DAYS = 365;
/** The site CA lives 20 years: re-keying a site means re-provisioning every box. */
export const CA_VALID_DAYS = 20 * 365;
/** Hub and client certificates: 10 years (an offline site has no renewal service). */
export const LEAF_VALID_DAYS = 10 * 365;

export interface KeyAndCertificate {
  /** PEM, PKCS#8 */
  keyPem: string;
  /** PEM certificate */
  certPem: string;
}

function validity(days: number, now: Date): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: new Date(now.getTime() - BACKDATE_DAYS * DAY_MS),
    notAfter: new Date(now.getTime() + days * DAY_MS),
  };
}

/** A positive 16-byte serial number (RFC 5280 §4.1.2.2: at most 20 octets, positive). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

async function newKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`;
}

async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  const der = createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign']);
}

/** X.500 names are built from validated identity/site names only ([a-z0-9-]), so no escaping is needed. */
function distinguishedName(commonName: string, site: string): string {
  return `CN=${commonName}, O=Outpost site ${site}`;
}

/** A new self-signed site CA. */
export async function createSiteCa(site: string, now = new Date()): Promise<KeyAndCertificate> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: distinguishedName(`Outpost site CA ${site}`, site),
    ...validity(CA_VALID_DAYS, now),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem: await exportKeyPem(keys.privateKey), certPem: cert.toString('pem') };
}

export interface LeafRequest {
  commonName: string;
  site: string;
  kind: 'server' | 'client';
  /** Server certificates: DNS names and IP addresses for subjectAltName. */
  hostNames?: readonly string[];
}

/** A key and a certificate signed by the site CA. */
export async function issueCertificate(
  ca: KeyAndCertificate,
  request: LeafRequest,
  now = new Date(),
): Promise<KeyAndCertificate> {
  const keys = await newKeyPair();
  const caCert = new x509.X509Certificate(ca.certPem);
  const names: x509.JsonGeneralName[] = (request.hostNames ?? []).map((host) =>
    isIP(host) ? { type: 'ip', value: host } : { type: 'dns', value: host },
  );
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension(
      [request.kind === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: distinguishedName(request.commonName, request.site),
    issuer: caCert.subject,
    ...validity(LEAF_VALID_DAYS, now),
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: await importSigningKey(ca.keyPem),
    extensions,
  });
  return { keyPem: await exportKeyPem(keys.privateKey), certPem: cert.toString('pem') };
}

/** SHA-256 of the certificate's DER, lowercase hex: the CA fingerprint a tech can compare. */
export function fingerprint(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/** Accepts `AB:CD:…` or plain hex, any case. */
export function normaliseFingerprint(text: string): string {
  return text.trim().replace(/:/g, '').toLowerCase();
}

/** The public key of a CA certificate, for checking bundle signatures. */
export function caPublicKey(certPem: string): KeyObject {
  return new X509Certificate(certPem).publicKey;
}
