// A throwaway site PKI for tests, made with the system openssl: a site CA (ECDSA P-256), a server
// certificate for 127.0.0.1/localhost, client certificates by CN, and an unrelated "rogue" CA.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  /** Client certificate and key signed by the site CA, with subject CN = `name`. */
  client(name: string): { cert: string; key: string };
  /** Client certificate and key with CN = `name`, signed by a CA the broker does not trust. */
  rogueClient(name: string): { cert: string; key: string };
}

let cached: Pki | undefined;

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, prefix: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${prefix}.key`]);
  openssl(dir, [
    'req', '-x509', '-new', '-key', `${prefix}.key`, '-sha256', '-days', '30',
    '-subj', `/CN=${prefix} test CA`, '-out', `${prefix}.crt`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]); // prettier-ignore
}

function issue(dir: string, ca: string, name: string, cn: string, extensions: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-days', '30', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
  ]); // prettier-ignore
}

export function testPki(): Pki {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'outpost-pki-'));
  makeCa(dir, 'site');
  makeCa(dir, 'rogue');
  issue(
    dir,
    'site',
    'server',
    'hub',
    'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  const clients = new Map<string, { cert: string; key: string }>();
  const clientOf = (ca: 'site' | 'rogue', cn: string) => {
    const file = `${ca}-client-${cn}`;
    const known = clients.get(file);
    if (known) return known;
    issue(dir, ca, file, cn, 'extendedKeyUsage=clientAuth\n');
    const made = { cert: join(dir, `${file}.crt`), key: join(dir, `${file}.key`) };
    clients.set(file, made);
    return made;
  };
  cached = {
    dir,
    ca: join(dir, 'site.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    client: (cn) => clientOf('site', cn),
    rogueClient: (cn) => clientOf('rogue', cn),
  };
  return cached;
}
