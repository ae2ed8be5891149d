// The box's own credentials on its broker's loopback listener: `local-admin` (role admin) for the tools
// on the box (`outpost chat`, mosquitto_sub), its password in a 0600 file under the data dir (being able
// to read the file is the permission), and the daemon's own device identity with a random password kept
// in memory, for its uplink in hub role when the config names no uplink, and the in-memory identities of
// the daemon's own services (the site bridge's `centre`). Small on purpose: the CLI reads the file name
// from here without loading the broker (Aedes, LevelDB, ws).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Role } from './identities.js';

/** The user name of the daemon's local credential, for tools on the box (loopback listener only). */
export const LOCAL_ADMIN = 'local-admin';

/** Where the daemon keeps the local-admin password (0600), under its data dir. */
export function localAdminFile(dataDir: string): string {
  return join(dataDir, 'local-admin.password');
}

/** The two in-memory credentials; made by the broker at start, checked on its loopback listener only. */
export class LocalCredentials {
  private selfPassword = '';
  /** In-memory loopback identities of the daemon's own services (the bridge's `centre`): name → role, password. */
  private readonly services = new Map<string, { role: Role; password: string }>();
  private localPassword = '';

  constructor(
    private readonly dataDir: string,
    /** The daemon's own device name: its uplink logs in as this. */
    readonly device: string,
  ) {}

  get file(): string {
    return localAdminFile(this.dataDir);
  }

  /** A fresh in-memory password for the daemon itself; the local-admin file's, made if missing or short. */
  async prepare(): Promise<void> {
    this.selfPassword = randomBytes(24).toString('base64url');
    try {
      this.localPassword = (await readFile(this.file, 'utf8')).trim();
    } catch {
      this.localPassword = '';
    }
    if (this.localPassword.length < 16) {
      this.localPassword = randomBytes(24).toString('base64url');
      await writeFile(this.file, `${this.localPassword}\n`, { mode: 0o600 });
    }
    await chmod(this.file, 0o600);
  }

  /**
   * An identity for one of the daemon's own services, with a random password, valid on the loopback
   * listener only and never in the identities file (its name is reserved from then on).
   */
  addService(name: string, role: Role): { username: string; password: string } {
    const password = randomBytes(24).toString('base64url');
    this.services.set(name, { role, password });
    return { username: name, password };
  }

  /** The role of a service identity (addService), or undefined for any other name. */
  serviceRole(name: string): Role | undefined {
    return this.services.get(name)?.role;
  }

  /** The names of the service identities, for the reserved-name check of the identities file. */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** Username and password of the daemon's own client. */
  self(): { username: string; password: string } {
    return { username: this.device, password: this.selfPassword };
  }

  /** Whether `password` is the one for `username` (a service, local-admin, or the daemon's own device). */
  matches(username: string, password: string): boolean {
    const expected =
      this.services.get(username)?.password ??
      (username === LOCAL_ADMIN ? this.localPassword : this.selfPassword);
    return sameSecret(password, expected);
  }
}

function sameSecret(given: string, expected: string): boolean {
  // Compare hashes of both, so the comparison takes the same time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return expected.length > 0 && timingSafeEqual(a, b);
}
