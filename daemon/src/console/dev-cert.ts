// A development box has no provisioned certificate: for a console on loopback only, the daemon makes a
// small CA of its own and a certificate for 127.0.0.1, ::1 and localhost under dataDir/console/tls
// (kept, so a browser told to trust it once keeps trusting it). The same code as `outpost-provision`
// (tls/pki.ts): ECDSA P-256, back-dated a year. Loaded only here, when needed: a provisioned hub never
// loads the X.509 library.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface DevCertificate {
  cert: Buffer;
  key: Buffer;
  /** The CA a browser can be told to trust (docs/console.md). */
  caFile: string;
}

export async function devCertificate(dataDir: string, site: string): Promise<DevCertificate> {
  const dir = join(dataDir, 'console', 'tls');
  const files = {
    ca: join(dir, 'dev-ca.crt'),
    cert: join(dir, 'dev-server.crt'),
    key: join(dir, 'dev-server.key'),
  };
  let cert: Buffer;
  let key: Buffer;
  try {
    [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
  } catch {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const { createSiteCa, issueCertificate } = await import('../tls/pki.js');
    const ca = await createSiteCa(`${site}-dev`);
    const server = await issueCertificate(ca, {
      commonName: 'localhost',
      site: `${site}-dev`,
      kind: 'server',
      hostNames: ['localhost', '127.0.0.1', '::1'],
    });
    // The CA's key is not kept: nothing else is ever signed with it.
    const chain = `${server.certPem.trim()}\n${ca.certPem.trim()}\n`;
    await writeFile(files.ca, `${ca.certPem.trim()}\n`, { mode: 0o644 });
    await writeFile(files.cert, chain, { mode: 0o644 });
    await writeFile(files.key, server.keyPem, { mode: 0o600 });
    [cert, key] = [Buffer.from(chain), Buffer.from(server.keyPem)];
  }
  return { cert, key, caFile: files.ca };
}
