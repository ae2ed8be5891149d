// Who may connect to the broker: the identities file written by provisioning (`outpost-provision`),
// its password hashes, and the lookup the broker's authenticate hook uses. The identity (username or
// client-certificate CN), never the client id or a payload field, is who a client is.
//
// File format (JSON, mode 0600/0640, owner outpost), documented in docs/provisioning.md:
//   { "version": 1, "site": "plant-7",
//     "identities": [ { "name": "cam-north", "role": "device", "password": "scrypt$ln=14,r=8,p=1$…$…",
//                       "certificate": true } ] }
// `password` absent: certificate only. `certificate` true: a client certificate signed by the site CA
// whose subject CN is `name` authenticates without a password.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { OutpostError } from '../errors.js';

export const ROLES = ['device', 'console', 'staff', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Identity names become topic segments (devices) and log fields, like config names. */
export const identityName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, {
  error: 'use 1–32 lowercase letters, digits or "-", starting with a letter or digit',
});

const PASSWORD_HASH =
  /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

const identitySchema = z.strictObject({
  name: identityName,
  role: z.enum(ROLES, { error: `role must be one of: ${ROLES.join(', ')}` }),
  password: z
    .string()
    .regex(PASSWORD_HASH, {
      error:
        'password must be a hash made by outpost-provision (scrypt$ln=…,r=…,p=…$salt$hash), never plain text',
    })
    .optional(),
  certificate: z.boolean().default(false),
});

export const identitiesFileSchema = z
  .strictObject({
    version: z.literal(1, { error: 'identities file version must be 1' }),
    site: identityName,
    identities: z.array(identitySchema),
  })
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.identities.forEach((identity, index) => {
      if (seen.has(identity.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['identities', index, 'name'],
          message: `identity ${identity.name} appears twice`,
        });
      }
      seen.add(identity.name);
      if (identity.password === undefined && !identity.certificate) {
        ctx.addIssue({
          code: 'custom',
          path: ['identities', index],
          message: `identity ${identity.name} has neither a password nor certificate: true, so it can never log in`,
        });
      }
    });
  });

export type IdentitiesFile = z.output<typeof identitiesFileSchema>;
export type IdentityRecord = IdentitiesFile['identities'][number];

/** An authenticated client, as the ACL sees it. */
export interface Identity {
  name: string;
  role: Role;
}

/** scrypt cost: N = 2^14, r = 8 (16 MiB, ~50 ms here): affordable on a Pi Zero 2, slow to brute-force. */
const DEFAULT_COST = { ln: 14, r: 8, p: 1 };
const KEY_LENGTH = 32;

function scryptAsync(
  password: string,
  salt: Buffer,
  cost: { ln: number; r: number; p: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const N = 2 ** cost.ln;
    // maxmem must cover 128 * N * r bytes; Node's default (32 MiB) is too tight for ln=15.
    scrypt(password, salt, KEY_LENGTH, { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

/** Hash a password for the identities file. */
export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, cost);
  return `scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Check a password against a stored hash, in constant time. False for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = PASSWORD_HASH.exec(stored);
  if (!match) return false;
  const [, ln, r, p, salt, hash] = match;
  const cost = { ln: Number(ln), r: Number(r), p: Number(p) };
  if (cost.ln < 10 || cost.ln > 20) return false;
  const expected = Buffer.from(hash ?? '', 'base64');
  const actual = await scryptAsync(password, Buffer.from(salt ?? '', 'base64'), cost);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** Parse identities file text; throws naming the file and every problem. */
export function parseIdentities(text: string, source: string): IdentitiesFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new OutpostError('IDENTITIES_INVALID', `${source} is not valid JSON`, {
      hint: 'write it again with `outpost-provision bundle`, or restore it from the site directory',
      cause: error,
    });
  }
  const result = identitiesFileSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`,
    );
    throw new OutpostError('IDENTITIES_INVALID', `${source}: ${problems.join('; ')}`, {
      hint: 'regenerate it with outpost-provision; the broker keeps the identities it had',
    });
  }
  return result.data;
}

export async function loadIdentities(file: string): Promise<IdentitiesFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new OutpostError('IDENTITIES_INVALID', `identities file ${file} cannot be read`, {
      hint: 'provision the box (outpost-provision bundle) or fix broker.identitiesFile',
      cause: error,
    });
  }
  return parseIdentities(text, file);
}

/**
 * The lookup table the broker authenticates against. `replace()` swaps it whole (SIGHUP reload), so a
 * half-read file is never in force; connected clients keep their sessions, and a client whose identity
 * is gone is refused at its next connect (the broker also drops it: see Broker.reloadIdentities).
 */
export class IdentityTable {
  private byName = new Map<string, IdentityRecord>();

  constructor(records: readonly IdentityRecord[] = []) {
    this.replace(records);
  }

  replace(records: readonly IdentityRecord[]): void {
    this.byName = new Map(records.map((record) => [record.name, record]));
  }

  /** Add one in-memory identity (the daemon's own local-admin credential). */
  add(record: IdentityRecord): void {
    this.byName.set(record.name, record);
  }

  get(name: string): IdentityRecord | undefined {
    return this.byName.get(name);
  }

  get size(): number {
    return this.byName.size;
  }

  /** Username + password: the identity, or undefined. Runs scrypt even for unknown names (no timing oracle). */
  async byPassword(username: string, password: string): Promise<Identity | undefined> {
    const record = this.byName.get(username);
    const stored = record?.password ?? DUMMY_HASH;
    const ok = await verifyPassword(password, stored);
    return ok && record?.password !== undefined ? { name: record.name, role: record.role } : undefined;
  }

  /** A verified client certificate's CN: the identity, when it exists and may use certificates. */
  byCertificate(commonName: string): Identity | undefined {
    const record = this.byName.get(commonName);
    return record?.certificate ? { name: record.name, role: record.role } : undefined;
  }
}

/** A well-formed hash of a random password, compared against for unknown users. */
const DUMMY_HASH = `scrypt$ln=${DEFAULT_COST.ln},r=8,p=1$${randomBytes(16).toString('base64')}$${randomBytes(KEY_LENGTH).toString('base64')}`;
